"""Which reader opens an MLflow store: its files or its database.

Apart from ``tracker.migrate`` because the readers build on that package's types.
"""

from __future__ import annotations

import os
import re

from tracker.errors import MigrationError
from tracker.migrate import Source
from tracker.migrate.mlflow_files import MLflowFileStore
from tracker.migrate.mlflow_sql import MLflowDatabase


def open_mlflow_source(location: str) -> Source:
    """An MLflow store to read: a ``mlruns`` directory (or ``file:`` URI), an SQLite file,
    or a database URL (``sqlite:///…``, ``postgresql://…``). ``mlflow+`` prefixes, as the
    MLflow backend spells its URIs, are accepted."""
    loc = location[len("mlflow+") :] if location.startswith("mlflow+") else location
    scheme = loc.split(":", 1)[0].lower() if re.match(r"[A-Za-z][\w+.-]+:", loc) else ""
    if scheme == "file":
        return MLflowFileStore(loc)
    if scheme.startswith(("http", "databricks")):
        raise MigrationError(
            f"{location!r} is a tracking server: import reads the store behind it. Pass the "
            "server's --backend-store-uri (a database URL or an mlruns directory) instead"
        )
    if scheme:
        return MLflowDatabase(loc)
    if os.path.isfile(loc):
        return MLflowDatabase(f"sqlite:///{os.path.abspath(loc)}")
    return MLflowFileStore(loc)
