"""Where the store is: explicit argument > ``TRACKER_URI`` > the nearest ``.tracker/`` in the
working directory or a parent (as git finds ``.git``) > a new ``./.tracker/``.

A directory (or a ``file:`` URI, so Qlib's ``"uri": "file:/home/me/mlruns"`` keeps working)
is a local store holding ``tracker.db`` and ``artifacts/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import ConfigError
from tracker.redact import MASK, mask  # noqa: F401  (re-exported: most callers import it here)
from tracker.registry import scheme_of

STORE_DIR = ".tracker"
DB_NAME = "tracker.db"
ARTIFACT_DIR = "artifacts"


@dataclass(frozen=True)
class Location:
    uri: str  # what the backend opens: a SQLAlchemy URL, or a backend-specific URI
    artifact_uri: str | None


def find_store(start: Path | None = None) -> Path | None:
    """The nearest existing ``.tracker`` directory at or above ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIR
        if candidate.is_dir():
            return candidate
    return None


def resolve(
    uri: str | os.PathLike[str] | None = None,
    artifact_uri: str | None = None,
    *,
    create: bool = True,
) -> Location:
    """Resolve a store location; with ``create=False`` a missing default store is an error
    that says where it looked."""
    raw = os.fspath(uri) if uri is not None else os.environ.get("TRACKER_URI") or None
    artifact_uri = artifact_uri or os.environ.get("TRACKER_ARTIFACT_URI") or None
    if raw is None:
        found = find_store()
        if found is None:
            if not create:
                raise ConfigError(
                    f"no tracker store found in {Path.cwd()} or its parents; pass --uri, "
                    "set TRACKER_URI, or run a tracked script here first"
                )
            found = Path.cwd() / STORE_DIR
        raw = str(found)
    return _normalise(raw, artifact_uri)


def _normalise(raw: str, artifact_uri: str | None) -> Location:
    scheme = scheme_of(raw)
    if scheme == "file" or not scheme or (len(scheme) == 1 and os.name == "nt"):
        folder = Path(_strip_file_scheme(raw)).expanduser().resolve()
        return Location(f"sqlite:///{folder / DB_NAME}", artifact_uri or str(folder / ARTIFACT_DIR))
    if scheme == "sqlite":
        path = raw.split(":///", 1)[1] if ":///" in raw else ""
        if not path or path == ":memory:":
            raise ConfigError(
                f"{mask(raw)!r} is an in-memory database, which other processes cannot see; "
                "give a file path such as sqlite:///runs/tracker.db"
            )
        db = Path(path).expanduser().resolve()
        return Location(f"sqlite:///{db}", artifact_uri or str(db.parent / ARTIFACT_DIR))
    if scheme.startswith("postgres") and artifact_uri is None:
        raise ConfigError(
            f"{mask(raw)!r} keeps metadata on a server, so artifacts need a shared place too: "
            "pass artifact_uri= (e.g. s3://bucket/tracker) or set TRACKER_ARTIFACT_URI"
        )
    return Location(raw, artifact_uri)


def _strip_file_scheme(raw: str) -> str:
    if not raw.lower().startswith("file:"):
        return raw
    rest = raw[5:]
    if rest.startswith("//"):
        rest = rest[2:]
        # file://host/path: only an empty host or localhost is local
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ConfigError(
                f"{mask(raw)!r} names a remote host; use a local path or a server URI"
            )
        rest = "/" + path
    return rest
