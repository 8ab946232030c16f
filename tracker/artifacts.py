"""Run artifacts on any fsspec filesystem, and turning logged objects into bytes and back.

Files live at ``<root>/<prefix>/<artifact path>``; callers pass a run's prefix
(:attr:`tracker.entities.RunInfo.artifact_prefix`), the store knows nothing of the database
(:mod:`tracker.manifest` keeps the database's manifest in step with the files).

Every call to a remote (asynchronous) filesystem such as S3 or GCS has a deadline:
``TRACKER_ARTIFACT_TIMEOUT`` seconds (default 60) plus as much again for every 8 MiB it
moves, so a server that stops answering (or reading) fails the call with ArtifactTimeout
instead of hanging it; on S3 the same number bounds each request's connect and read wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import posixpath
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import fsspec.core
from fsspec.implementations.local import LocalFileSystem

from tracker import errors
from tracker.entities import ArtifactEntry

#: Local writes go through ``<dir>/.tracker-tmp-<pid>@<host>.<random>``; names with this prefix
#: are reserved, hidden from listings and removed by :meth:`ArtifactStore.stale_temp_files`'s
#: caller (``tracker gc``) once their writer is gone.
TEMP_PREFIX = ".tracker-tmp-"
#: A temp file untouched this long (seconds) is taken as left by a killed save, whatever host
#: wrote it: a save in progress keeps writing to its file.
TEMP_STALE_AFTER = 3600.0
TIMEOUT_ENV = "TRACKER_ARTIFACT_TIMEOUT"
DEFAULT_TIMEOUT = 60.0

#: Pinned rather than HIGHEST_PROTOCOL: every Python tracker supports (>= 3.10) reads 5, and a
#: future Python's higher default must not write artifacts that older workers cannot load.
PICKLE_PROTOCOL = 5

_CHUNK = 1 << 20
# Remote reads fetch at most this much per request, and each call gets another timeout's worth
# of time per this many bytes moved: a transfer slower than that counts as stalled.
_RANGE = 8 << 20
_HOST = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:64]
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)@([A-Za-z0-9.-]*)\.[0-9a-f]+")
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
        unknown protocol, ConfigError for a bad ``TRACKER_ARTIFACT_TIMEOUT``."""
        self.root = root
        self.storage_options = dict(storage_options or {})
        self.timeout = artifact_timeout()
        proto = root.split("://", 1)[0].lower() if "://" in root else "file"
        options = _with_timeouts(proto, self.storage_options, self.timeout)
        try:
            fs, path = fsspec.core.url_to_fs(root, **options)
        except ImportError as e:
            hint = errors.install_hint(_EXTRAS[proto]) if proto in _EXTRAS else "install it"
            raise errors.BackendUnavailable(f"artifact root {root!r}: {e}; {hint}") from e
        except ValueError as e:
            raise errors.UnsupportedURIError(f"artifact root {root!r} is not usable: {e}") from e
        self._fs = fs
        self._local = isinstance(fs, LocalFileSystem)
        # s3fs, gcsfs: their blocking methods take a deadline (fsspec's timeout=).
        self._async = bool(getattr(fs, "async_impl", False))
        self._root = path.rstrip("/")

    def put_bytes(self, prefix: str, path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` at ``path`` (replacing it); returns size, sha256 checksum, mtime."""
        rel = validate_path(path)
        full = self._full(prefix, rel)
        if self._local:
            size, checksum = _atomic_local_write(full, (data,))
        else:
            # One PUT is atomic on object stores: readers see the old or the new object.
            self._call("pipe_file", full, data, moved=len(data))
            size, checksum = _digest((data,))
        return self._entry(rel, full, size, checksum)

    def put_file(
        self, prefix: str, local_path: str, artifact_path: str | None = None
    ) -> ArtifactEntry:
        """Store a local file as ``<artifact_path>/<basename>`` (None: top level), like
        MLflow's ``log_artifact``."""
        if os.path.isdir(local_path):
            raise errors.InvalidInputError(f"{local_path!r} is a directory; use put_dir")
        rel = join_path(artifact_path, os.path.basename(local_path))
        return self._put_file(prefix, local_path, rel)

    def put_dir(
        self, prefix: str, local_dir: str, artifact_path: str | None = None
    ) -> list[ArtifactEntry]:
        """Store a directory's files, recursively, under ``artifact_path`` (``log_artifacts``);
        empty sub-directories are dropped, as object stores have none."""
        return [self._put_file(prefix, str(f), r) for f, r in dir_files(local_dir, artifact_path)]

    def delete_prefix(self, prefix: str) -> None:
        """Remove a run's whole artifact directory; a missing one is fine."""
        full = self._full(prefix)
        self._fs.invalidate_cache(full)
        with contextlib.suppress(FileNotFoundError):
            self._call("rm", full, recursive=True)

    def open(self, prefix: str, path: str) -> IO[bytes]:
        """The file at ``path`` opened for reading, unbuffered (remote files are fetched in
        ranges as they are read); ArtifactNotFound if no file (directories don't count)."""
        rel = validate_path(path)
        return self._open(self._full(prefix, rel), rel, prefix)

    def get_bytes(self, prefix: str, path: str) -> bytes:
        """Return the file at ``path``; ArtifactNotFound if no file (directories don't count)."""
        with self.open(prefix, path) as f:
            return f.read()

    def digest(self, prefix: str, path: str) -> tuple[int, str]:
        """Size and ``"sha256:<hex>"`` of the stored file at ``path``, read once."""
        with self.open(prefix, path) as f:
            return HashingReader(f).finish()

    def exists(self, prefix: str, path: str) -> bool:
        """Whether a file or directory exists at ``path`` in the run."""
        full = self._full(prefix, validate_path(path))
        self._fs.invalidate_cache(full)
        return bool(self._call("exists", full))

    def list_artifacts(self, prefix: str, path: str | None = None) -> list[ArtifactEntry]:
        """The files under ``path`` (None: the whole run), recursively, sorted by path.

        Paths are relative to the run, temp files are never listed, a missing path gives [].
        ``checksum`` is ``""``: computing it would read every file."""
        rel = None if path is None else validate_path(path)
        base = self._full(prefix, rel)
        # s3fs/gcsfs cache listings, and another process may have written since.
        self._fs.invalidate_cache(base)
        try:
            info = self._call("info", base)
        except FileNotFoundError:
            return []
        found = [(base, rel or "", info)]
        if info["type"] == "directory":
            found = [(f, r if rel is None else f"{rel}/{r}", i) for f, r, i in self._walk(base)]
        return [
            ArtifactEntry(r, int(i.get("size") or 0), "", _mtime_ms(i))
            for _, r, i in sorted(found, key=lambda t: t[1])
        ]

    def download(
        self,
        prefix: str,
        path: str | None = None,
        dst_dir: str | None = None,
        check: Callable[[str, int, str], None] | None = None,
    ) -> str:
        """Return a local path of the file or directory ``path`` (None: the whole run).

        With ``dst_dir`` None, local roots give the path in place and remote ones download to
        a fresh temp directory; otherwise it is copied into ``dst_dir``. Each copied file is
        hashed as it streams and passed to ``check(artifact path, size, checksum)``, which may
        raise to refuse it: a refused file never reaches its final name. Raises
        ArtifactNotFound when nothing is at ``path``."""
        rel = None if path is None else validate_path(path)
        src = self._full(prefix, rel)
        self._fs.invalidate_cache(src)
        try:
            is_dir = self._call("info", src)["type"] == "directory"
        except FileNotFoundError as e:
            raise errors.ArtifactNotFound(f"no artifact at {self.url(prefix, rel)}") from e
        if self._local and dst_dir is None:
            return os.path.abspath(src)
        parent = dst_dir if dst_dir is not None else tempfile.mkdtemp(prefix="tracker-artifacts-")
        target = os.path.join(parent, posixpath.basename(rel)) if rel else parent
        os.makedirs(target if is_dir else parent, exist_ok=True)
        files = [(src, target, rel or "")]
        if is_dir:
            files = [
                (f, os.path.join(target, *c.split("/")), f"{rel}/{c}" if rel else c)
                for f, c, _ in self._walk(src)
            ]
        for full, local, artifact in files:
            self._copy_out(full, local, artifact, prefix, check)
        return target

    def url(self, prefix: str, path: str | None = None) -> str:
        """The full URL of the run's artifact directory, or of one artifact in it."""
        full = self._full(prefix, None if path is None else validate_path(path))
        return str(self._fs.unstrip_protocol(full))

    def local_dir(self, prefix: str) -> str | None:
        """The run's artifact directory as an absolute local path, or None for remote roots."""
        return os.path.abspath(self._full(prefix)) if self._local else None

    def stale_temp_files(self, older_than: float = TEMP_STALE_AFTER) -> list[tuple[str, int]]:
        """Temp files left by killed saves, as (path under the root, size), sorted: written on
        this host by a process that is gone, or untouched for ``older_than`` seconds. Remote
        roots have none (an object appears whole or not at all)."""
        if not self._local:
            return []
        cutoff = time.time() - older_than
        found = []
        for folder, _, names in os.walk(self._root):
            for name in names:
                if not name.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(folder, name)
                try:
                    stat = os.stat(full)
                except FileNotFoundError:  # its save just finished
                    continue
                if stat.st_mtime < cutoff or _writer_gone(name):
                    found.append((os.path.relpath(full, self._root), stat.st_size))
        return sorted(found)

    def remove_temp_file(self, path: str) -> None:
        """Remove one file named by :meth:`stale_temp_files` (already gone is fine)."""
        if not posixpath.basename(path.replace(os.sep, "/")).startswith(TEMP_PREFIX):
            raise errors.InvalidInputError(f"{path!r} is not a tracker temp file")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._root, path))

    def _full(self, prefix: str, rel: str | None = None) -> str:
        # The prefix is validated too: an empty or '..' prefix would make delete_prefix wipe
        # the root or a neighbour's files.
        parts = [self._root, validate_path(prefix, what="artifact prefix")]
        return "/".join(parts if rel is None else [*parts, rel])

    def _call(self, method: str, *args: Any, moved: int = 0, **kwargs: Any) -> Any:
        """``fs.<method>(*args, **kwargs)``; on a remote filesystem within its deadline."""
        if self._async:
            kwargs["timeout"] = self.timeout * (1 + moved / _RANGE)
        try:
            return getattr(self._fs, method)(*args, **kwargs)
        except Exception as e:
            if not _is_timeout(e):
                raise
            url = self._fs.unstrip_protocol(args[0])
            raise errors.ArtifactTimeout(
                f"artifact server did not answer within {self.timeout:g} s: {url}; if it is "
                f"only slow, raise {TIMEOUT_ENV} (now {self.timeout:g})"
            ) from e

    def _open(self, full: str, rel: str, prefix: str) -> IO[bytes]:
        try:
            if self._local:
                return open(full, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
            self._fs.invalidate_cache(full)
            info = self._call("info", full)
            if info["type"] != "file":
                raise IsADirectoryError(full)
            return cast(IO[bytes], _RangeReader(self, full, int(info["size"])))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise errors.ArtifactNotFound(f"no artifact file {rel!r} at {self.url(prefix)}") from e

    def _copy_out(
        self,
        full: str,
        local: str,
        artifact: str,
        prefix: str,
        check: Callable[[str, int, str], None] | None,
    ) -> None:
        # Written under a temp name beside the target and renamed once checked.
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = os.path.join(os.path.dirname(local), _temp_name())
        try:
            with self._open(full, artifact, prefix) as raw, open(tmp, "wb") as out:
                reader = HashingReader(raw)
                while chunk := reader.read(_RANGE):
                    out.write(chunk)
                size, checksum = reader.finish()
            if check is not None:
                check(artifact, size, checksum)
            os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _put_file(self, prefix: str, src: str, rel: str) -> ArtifactEntry:
        full = self._full(prefix, rel)
        if self._local:
            size, checksum = _atomic_local_write(full, _read_chunks(src))
        else:
            size, checksum = _digest(_read_chunks(src))
            self._call("put_file", src, full, moved=size)
        return self._entry(rel, full, size, checksum)

    def _entry(self, rel: str, full: str, size: int, checksum: str) -> ArtifactEntry:
        # Remote: the clock is good enough and saves a HEAD request per file.
        mtime = os.stat(full).st_mtime_ns // 1_000_000 if self._local else int(time.time() * 1000)
        return ArtifactEntry(path=rel, size=size, checksum=checksum, mtime=mtime)

    def _walk(self, base: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for full, info in self._call("find", base, detail=True).items():
            rel = full[len(base) :].lstrip("/")
            if rel and not any(p.startswith(TEMP_PREFIX) for p in rel.split("/")):
                yield full, rel, info


class _RangeReader(io.RawIOBase):
    """A remote file read in ranges of at most ``_RANGE`` bytes, each one call with its
    deadline (a file object from fsspec's ``open`` would wait on the server without one)."""

    def __init__(self, store: ArtifactStore, full: str, size: int) -> None:
        super().__init__()
        self._store, self._full, self._size, self._pos = store, full, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos, _RANGE)
        if n <= 0:
            return 0
        end = self._pos + n
        data = self._store._call("cat_file", self._full, start=self._pos, end=end, moved=n)
        memoryview(buffer).cast("B")[: len(data)] = data
        self._pos += len(data)
        return len(data)  # short only if the object shrank meanwhile: its checksum will tell

    def readall(self) -> bytes:
        return _read_all(self)


class HashingReader(io.RawIOBase):
    """Passes a binary file's bytes through while hashing them, so that a reader (pickle, a
    copy) checks what it read without reading it twice. :meth:`finish` hashes what is left
    unread and returns ``(size, "sha256:<hex>")`` of the whole file."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw, self._hash, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer) or 0  # type: ignore[attr-defined]
        if n:
            self._hash.update(memoryview(buffer).cast("B")[:n])
            self.size += n
        return n

    def readall(self) -> bytes:
        return _read_all(self)

    def finish(self) -> tuple[int, str]:
        buffer = bytearray(_RANGE)
        while self.readinto(buffer):
            pass
        return self.size, "sha256:" + self._hash.hexdigest()


def _read_all(raw: io.RawIOBase) -> bytes:
    # RawIOBase.readall reads 8 KiB at a time: one request each on a remote file.
    return b"".join(iter(lambda: raw.read(_RANGE) or b"", b""))


def artifact_timeout() -> float:
    """``TRACKER_ARTIFACT_TIMEOUT`` in seconds (default 60); ConfigError if it is not > 0."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise errors.ConfigError(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds > 0; set e.g. {TIMEOUT_ENV}=60"
        )
    return value


def _with_timeouts(proto: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The storage options with botocore's per-request waits set, unless the caller set them."""
    if _EXTRAS.get(proto) != "s3":
        return options
    config = {"connect_timeout": timeout, "read_timeout": timeout}
    return {**options, "config_kwargs": {**config, **(options.get("config_kwargs") or {})}}


def _is_timeout(error: BaseException) -> bool:
    # fsspec's deadline raises FSTimeoutError (an asyncio.TimeoutError); botocore's own
    # timeouts do not subclass the built-in, and botocore is only loaded if S3 was used.
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return True
    boto = sys.modules.get("botocore.exceptions")
    timeouts = (boto.ConnectTimeoutError, boto.ReadTimeoutError) if boto else ()
    return isinstance(error, timeouts)


def join_path(folder: str | None, name: str) -> str:
    """``folder/name`` validated; the folder is checked on its own so that e.g. ``'a/..'``
    cannot resolve to the run root."""
    return validate_path(name if folder is None else f"{validate_path(folder)}/{name}")


def dir_files(local_dir: str, artifact_path: str | None) -> list[tuple[Path, str]]:
    """(local file, artifact path) for every file under ``local_dir``, recursively, sorted;
    every path is validated first, so that a bad name stores nothing."""
    if not os.path.isdir(local_dir):
        raise errors.InvalidInputError(f"{local_dir!r} is not a directory; use put_file")
    files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
    return [(p, join_path(artifact_path, p.relative_to(local_dir).as_posix())) for p in files]


def _temp_name() -> str:
    return f"{TEMP_PREFIX}{os.getpid()}@{_HOST}.{secrets.token_hex(8)}"


def _writer_gone(name: str) -> bool:
    """Whether the temp file ``name`` was written on this host by a process that has ended."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None or match[2] != _HOST or os.name == "nt":  # os.kill(pid, 0) kills there
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process; not a pid
        return False
    return False


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
    tmp = os.path.join(parent, _temp_name())
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
                raise errors.InvalidTypeError(
                    f"a .txt artifact holds a str, not {type(obj).__name__}"
                )
            return obj.encode()
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    # Arrow's errors subclass these built-ins too.
    except (TypeError, ValueError, AttributeError, NotImplementedError, pickle.PicklingError) as e:
        pkl = posixpath.splitext(name)[0] + ".pkl"
        hint = "" if fmt == "pickle" else f"; name it e.g. {pkl!r} to pickle it instead"
        raise errors.InvalidInputError(f"cannot store {name!r} as {fmt}: {e}{hint}") from e


def load(name: str, file: IO[bytes], unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """Reverse :func:`dumps`, reading a binary file: a pickle is unpickled as it streams, other
    formats are read whole first. ``unpickler`` replaces :class:`pickle.Unpickler` (Qlib's hook).

    Raises LoadObjectError, naming the artifact, when the bytes do not decode; errors of the
    store the file reads from (e.g. ArtifactTimeout) pass as they are."""
    fmt = _FORMATS.get(posixpath.splitext(name)[1].lower(), "pickle")
    try:
        if fmt == "pickle":
            return (unpickler or pickle.Unpickler)(file).load()
        data = file.read()
        if fmt == "parquet":
            return _load_parquet(data)
        if fmt == "json":
            return json.loads(data.decode("utf-8"))
        return data.decode("utf-8")
    except errors.UnsafeObjectError as e:  # tracker.safe_pickle refused it: say which artifact
        raise errors.UnsafeObjectError(f"artifact {name!r} {e}", e.reference) from None
    except errors.TrackerError:
        raise
    except Exception as e:
        raise errors.LoadObjectError(f"cannot load artifact {name!r} as {fmt}: {e!r}") from e


def loads(name: str, data: bytes, unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """:func:`load` from bytes."""
    return load(name, io.BytesIO(data), unpickler)


# pandas/pyarrow are imported on use: they are slow to import and most store calls never need them.
def _dump_parquet(obj: Any) -> bytes:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(obj, (pd.DataFrame, pd.Series)):
        raise errors.InvalidTypeError(f"a {type(obj).__name__} is not a DataFrame or Series")
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
