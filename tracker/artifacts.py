"""Run artifacts on any fsspec filesystem, and turning logged objects into bytes and back.

Files live at ``<root>/<prefix>/<artifact path>``; callers pass a run's prefix
(:attr:`tracker.entities.RunInfo.artifact_prefix`), the store knows nothing of the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import posixpath
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec.core
from fsspec.implementations.local import LocalFileSystem

from tracker import errors
from tracker.entities import ArtifactEntry

#: Local writes go through ``<dir>/.tracker-tmp-<random>``; names with this prefix are reserved,
#: hidden from listings and safe to delete once no writer is running.
TEMP_PREFIX = ".tracker-tmp-"

#: Pinned rather than HIGHEST_PROTOCOL: every Python tracker supports (>= 3.10) reads 5, and a
#: future Python's higher default must not write artifacts that older workers cannot load.
PICKLE_PROTOCOL = 5

_CHUNK = 1 << 20
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_PARQUET_META_KEY = b"tracker"
# Any other name is pickled, as Qlib does. ``.txt`` is text so that the code_*.txt files
# written at run start read back as text.
_FORMATS = {".parquet": "parquet", ".json": "json", ".txt": "text"}


def validate_path(path: str, *, what: str = "artifact path") -> str:
    """Normalise a relative POSIX artifact path, e.g. ``"a/./b/../c/"`` -> ``"a/c"``.

    Raises InvalidArtifactPath (naming it as ``what``) if it is empty, absolute, climbs out with
    ``..``, contains NUL or a backslash, or uses the reserved temp-file prefix."""
    norm = posixpath.normpath(path) if isinstance(path, str) and path else "."
    for bad, why in (
        ("\x00" in norm, "contains a NUL character; remove it"),
        ("\\" in norm, "contains a backslash; use '/' as the separator"),
        (norm[:1] == "/" or re.match("[A-Za-z]:", norm), "is absolute; make it relative"),
        (norm == ".", "is empty or names no file; give a path like 'model/pred.pkl'"),
        (norm == ".." or norm.startswith("../"), "climbs out of the run; remove the '..' parts"),
        (any(p.startswith(TEMP_PREFIX) for p in norm.split("/")), "uses a reserved name prefix"),
    ):
        if bad:
            raise errors.InvalidArtifactPath(f"{what} {path!r} {why}")
    return norm


class ArtifactStore:
    """Artifacts of all runs under one root directory or URL."""

    validate_path = staticmethod(validate_path)

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        """Open ``root``, a local path or fsspec URL; ``storage_options`` go to fsspec.

        Raises BackendUnavailable when s3fs/gcsfs is missing, UnsupportedURIError for an
        unknown protocol."""
        self.root = root
        self.storage_options = dict(storage_options or {})
        try:
            fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
        except ImportError as e:
            proto = root.split("://", 1)[0].lower() if "://" in root else "file"
            hint = f"pip install 'tracker[{_EXTRAS[proto]}]'" if proto in _EXTRAS else "install it"
            raise errors.BackendUnavailable(f"artifact root {root!r}: {e}; {hint}") from e
        except ValueError as e:
            raise errors.UnsupportedURIError(f"artifact root {root!r} is not usable: {e}") from e
        self._fs = fs
        self._local = isinstance(fs, LocalFileSystem)
        self._root = path.rstrip("/")

    def put_bytes(self, prefix: str, path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` at ``path`` (replacing it); returns size, sha256 checksum, mtime."""
        rel = validate_path(path)
        full = self._full(prefix, rel)
        if self._local:
            size, checksum = _atomic_local_write(full, (data,))
        else:
            # One PUT is atomic on object stores: readers see the old or the new object.
            self._fs.pipe_file(full, data)
            size, checksum = _digest((data,))
        return self._entry(rel, full, size, checksum)

    def put_file(
        self, prefix: str, local_path: str, artifact_path: str | None = None
    ) -> ArtifactEntry:
        """Store a local file as ``<artifact_path>/<basename>`` (None: top level), like
        MLflow's ``log_artifact``."""
        if os.path.isdir(local_path):
            raise errors.InvalidInputError(f"{local_path!r} is a directory; use put_dir")
        rel = self._join(artifact_path, os.path.basename(local_path))
        return self._put_file(prefix, local_path, rel)

    def put_dir(
        self, prefix: str, local_dir: str, artifact_path: str | None = None
    ) -> list[ArtifactEntry]:
        """Store a directory's files, recursively, under ``artifact_path`` (``log_artifacts``);
        empty sub-directories are dropped, as object stores have none."""
        if not os.path.isdir(local_dir):
            raise errors.InvalidInputError(f"{local_dir!r} is not a directory; use put_file")
        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
        # Validate every path before the first write, so that a bad name stores nothing.
        rels = [self._join(artifact_path, p.relative_to(local_dir).as_posix()) for p in files]
        return [self._put_file(prefix, str(f), r) for f, r in zip(files, rels, strict=True)]

    def delete_prefix(self, prefix: str) -> None:
        """Remove a run's whole artifact directory; a missing one is fine."""
        full = self._full(prefix)
        self._fs.invalidate_cache(full)
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(full, recursive=True)

    def get_bytes(self, prefix: str, path: str) -> bytes:
        """Return the file at ``path``; ArtifactNotFound if no file (directories don't count)."""
        rel = validate_path(path)
        full = self._full(prefix, rel)
        try:
            return self._fs.cat_file(full)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise errors.ArtifactNotFound(f"no artifact file {rel!r} at {self.url(prefix)}") from e

    def exists(self, prefix: str, path: str) -> bool:
        """Whether a file or directory exists at ``path`` in the run."""
        full = self._full(prefix, validate_path(path))
        self._fs.invalidate_cache(full)
        return bool(self._fs.exists(full))

    def list_artifacts(self, prefix: str, path: str | None = None) -> list[ArtifactEntry]:
        """The files under ``path`` (None: the whole run), recursively, sorted by path.

        Paths are relative to the run, temp files are never listed, a missing path gives [].
        ``checksum`` is ``""``: computing it would read every file."""
        rel = None if path is None else validate_path(path)
        base = self._full(prefix, rel)
        # s3fs/gcsfs cache listings, and another process may have written since.
        self._fs.invalidate_cache(base)
        try:
            info = self._fs.info(base)
        except FileNotFoundError:
            return []
        found = [(base, rel or "", info)]
        if info["type"] == "directory":
            found = [(f, r if rel is None else f"{rel}/{r}", i) for f, r, i in self._walk(base)]
        return [
            ArtifactEntry(r, int(i.get("size") or 0), "", _mtime_ms(i))
            for _, r, i in sorted(found, key=lambda t: t[1])
        ]

    def download(self, prefix: str, path: str | None = None, dst_dir: str | None = None) -> str:
        """Return a local path of the file or directory ``path`` (None: the whole run).

        With ``dst_dir`` None, local roots give the path in place and remote ones download to
        a fresh temp directory; otherwise it is copied into ``dst_dir``. Raises ArtifactNotFound
        when nothing is at ``path``."""
        rel = None if path is None else validate_path(path)
        src = self._full(prefix, rel)
        self._fs.invalidate_cache(src)
        try:
            is_dir = self._fs.info(src)["type"] == "directory"
        except FileNotFoundError as e:
            raise errors.ArtifactNotFound(f"no artifact at {self.url(prefix, rel)}") from e
        if self._local and dst_dir is None:
            return os.path.abspath(src)
        parent = dst_dir if dst_dir is not None else tempfile.mkdtemp(prefix="tracker-artifacts-")
        target = os.path.join(parent, posixpath.basename(rel)) if rel else parent
        os.makedirs(target if is_dir else parent, exist_ok=True)
        pairs = [(src, target)]
        if is_dir:
            pairs = [(f, os.path.join(target, *c.split("/"))) for f, c, _ in self._walk(src)]
        for remote, local in pairs:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            self._fs.get_file(remote, local)
        return target

    def url(self, prefix: str, path: str | None = None) -> str:
        """The full URL of the run's artifact directory, or of one artifact in it."""
        full = self._full(prefix, None if path is None else validate_path(path))
        return str(self._fs.unstrip_protocol(full))

    def local_dir(self, prefix: str) -> str | None:
        """The run's artifact directory as an absolute local path, or None for remote roots."""
        return os.path.abspath(self._full(prefix)) if self._local else None

    def _full(self, prefix: str, rel: str | None = None) -> str:
        # The prefix is validated too: an empty or '..' prefix would make delete_prefix wipe
        # the root or a neighbour's files.
        parts = [self._root, validate_path(prefix, what="artifact prefix")]
        return "/".join(parts if rel is None else [*parts, rel])

    @staticmethod
    def _join(folder: str | None, name: str) -> str:
        # The folder is checked on its own so that e.g. 'a/..' cannot resolve to the run root.
        return validate_path(name if folder is None else f"{validate_path(folder)}/{name}")

    def _put_file(self, prefix: str, src: str, rel: str) -> ArtifactEntry:
        full = self._full(prefix, rel)
        if self._local:
            size, checksum = _atomic_local_write(full, _read_chunks(src))
        else:
            size, checksum = _digest(_read_chunks(src))
            self._fs.put_file(src, full)
        return self._entry(rel, full, size, checksum)

    def _entry(self, rel: str, full: str, size: int, checksum: str) -> ArtifactEntry:
        # Remote: the clock is good enough and saves a HEAD request per file.
        mtime = os.stat(full).st_mtime_ns // 1_000_000 if self._local else int(time.time() * 1000)
        return ArtifactEntry(path=rel, size=size, checksum=checksum, mtime=mtime)

    def _walk(self, base: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for full, info in self._fs.find(base, detail=True).items():
            rel = full[len(base) :].lstrip("/")
            if rel and not any(p.startswith(TEMP_PREFIX) for p in rel.split("/")):
                yield full, rel, info


def _read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(_CHUNK), b"")


def _digest(chunks: Iterable[bytes], sink: Any = None) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    for chunk in chunks:
        if sink is not None:
            sink.write(chunk)
        h.update(chunk)
        size += len(chunk)
    return size, "sha256:" + h.hexdigest()


def _atomic_local_write(full: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    # os.replace is atomic within a filesystem: readers see the old or the new file, and a
    # process killed mid-write leaves at most a TEMP_PREFIX file, never a partial artifact.
    parent = os.path.dirname(full)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, TEMP_PREFIX + secrets.token_hex(8))
    # O_EXCL never clobbers another writer's temp file; mode 0o666 lets the umask decide the
    # permissions as a plain open() would (mkstemp forces 0600, surprising for shared roots).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            size, checksum = _digest(chunks, sink=f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, full)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # persist the rename too; Windows cannot open directories
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return size, checksum


def _mtime_ms(info: dict[str, Any]) -> int:
    # Each fsspec implementation names and types the modification time differently.
    value = next((info[k] for k in ("mtime", "LastModified", "updated", "created") if k in info), 0)
    if isinstance(value, str):  # gcsfs: ISO text
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int((value.timestamp() if isinstance(value, datetime) else value) * 1000)


def dumps(name: str, obj: Any) -> bytes:
    """Serialise ``obj`` in the format picked by ``name``'s suffix.

    ``.parquet``: DataFrame or Series (index, MultiIndex, names kept); ``.json``: UTF-8 JSON
    (lossy as JSON is: tuples become lists); ``.txt``: a str as UTF-8; anything else
    (``pred.pkl``, ``task``): pickle.
    Raises InvalidInputError when the object cannot be stored in that format."""
    fmt = _FORMATS.get(posixpath.splitext(name)[1].lower(), "pickle")
    try:
        if fmt == "json":
            # allow_nan=False: NaN/Infinity are not JSON and break non-Python readers.
            return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=2).encode()
        if fmt == "parquet":
            return _dump_parquet(obj)
        if fmt == "text":
            if not isinstance(obj, str):
                raise TypeError(f"a .txt artifact holds a str, not {type(obj).__name__}")
            return obj.encode()
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    # Arrow's errors subclass these built-ins too.
    except (TypeError, ValueError, AttributeError, NotImplementedError, pickle.PicklingError) as e:
        pkl = posixpath.splitext(name)[0] + ".pkl"
        hint = "" if fmt == "pickle" else f"; name it e.g. {pkl!r} to pickle it instead"
        raise errors.InvalidInputError(f"cannot store {name!r} as {fmt}: {e}{hint}") from e


def loads(name: str, data: bytes, unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """Reverse :func:`dumps`; ``unpickler`` replaces :class:`pickle.Unpickler` (Qlib's hook).

    Raises LoadObjectError, naming the artifact, when ``data`` does not decode."""
    fmt = _FORMATS.get(posixpath.splitext(name)[1].lower(), "pickle")
    try:
        if fmt == "parquet":
            return _load_parquet(data)
        if fmt == "json":
            return json.loads(data.decode("utf-8"))
        if fmt == "text":
            return data.decode("utf-8")
        return (unpickler or pickle.Unpickler)(io.BytesIO(data)).load()
    except errors.UnsafeObjectError as e:  # tracker.safe_pickle refused it: say which artifact
        raise errors.UnsafeObjectError(f"artifact {name!r} {e}", e.reference) from None
    except Exception as e:
        raise errors.LoadObjectError(f"cannot load artifact {name!r} as {fmt}: {e!r}") from e


# pandas/pyarrow are imported on use: they are slow to import and most store calls never need them.
def _dump_parquet(obj: Any) -> bytes:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(obj, (pd.DataFrame, pd.Series)):
        raise TypeError(f"a {type(obj).__name__} is not a DataFrame or Series")
    # A one-column frame forgets that it was a Series, and to_frame() names an unnamed Series'
    # column 0, so both facts go in the schema metadata.
    is_series = isinstance(obj, pd.Series)
    meta = {"series": is_series, "unnamed": is_series and obj.name is None}
    table = pa.Table.from_pandas(obj.to_frame() if is_series else obj)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _PARQUET_META_KEY: json.dumps(meta).encode()}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _load_parquet(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    frame = table.to_pandas()
    meta = json.loads((table.schema.metadata or {}).get(_PARQUET_META_KEY, b"{}"))
    if meta.get("series"):
        return frame.iloc[:, 0].rename(None) if meta["unnamed"] else frame.iloc[:, 0]
    return frame
