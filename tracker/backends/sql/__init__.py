"""The native store: metadata in SQLite or PostgreSQL through SQLAlchemy, artifacts via fsspec."""

#: Bumped by every migration step in :mod:`tracker.backends.sql.migrations`. Kept here, free of
#: imports, so that the stdlib-only SQLite reader can check it without loading SQLAlchemy.
SCHEMA_VERSION = 1
