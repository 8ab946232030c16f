"""The native store: metadata in SQLite or PostgreSQL through SQLAlchemy, artifacts via fsspec."""
