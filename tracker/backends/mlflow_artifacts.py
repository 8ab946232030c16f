"""Storage for the MLflow adapter: run artifacts through MLflow's artifact repositories (with
the method names of :class:`tracker.artifacts.ArtifactStore`, so
:class:`~tracker.recorder.Recorder` works unchanged), and fitting our keys and values into
MLflow's limits.

Callers pass a run's ``artifact_prefix`` (``"<exp>/<run>/artifacts"``); the run id is taken
from it and MLflow resolves where that run keeps its files (its ``artifact_uri``: a local
folder, S3, GCS, an ``mlflow-artifacts:`` proxy ...). Checksums are computed locally while
writing, as MLflow keeps none. ``mlflow`` is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import posixpath
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tracker import errors
from tracker.artifacts import TEMP_PREFIX, HashingReader, dir_files, join_path, validate_path
from tracker.entities import ArtifactEntry
from tracker.manager import now_ms

if TYPE_CHECKING:
    from tracker.backends.mlflow import MLflowExpManager

MAX_KEY, MAX_PARAM, MAX_TAG = 250, 6000, 8000  # MLflow's limits (mlflow/utils/validation.py)
MAX_METRICS, MAX_PARAMS_TAGS, MAX_ENTITIES = 1000, 100, 1000  # per log_batch call
MAX_BATCH_BYTES = 900_000  # a REST log-batch body is capped at 1 MB
#: Files the adapter keeps for itself (over-long param and tag values); hidden from listings.
INTERNAL_DIR = ".tracker"
POINTER = "tracker:artifact:"  # value prefix: the whole value is in this artifact
INF_PREFIX = "tracker.inf/"  # companion metrics marking clamped infinities
MANIFEST_PREFIX = "tracker.artifact."  # one tag per artifact file
_MAX = sys.float_info.max  # what MLflow stores for inf
_MLFLOW_KEY = re.compile(r"[/\w.\- :]*")  # the characters MLflow accepts in keys (not on Windows)
_LITERAL = re.compile(r"[\w\- ]")  # characters an escaped key keeps as they are
_ESCAPE = re.compile(r":([0-9a-z]{4})")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


# ------------------------------------------------------------------------------ keys, values


def encode_key(key: str) -> str:
    """The key as MLflow stores it: itself when MLflow accepts it, else ``":"`` + the key with
    every other character escaped as ``:`` + 4 base-36 digits (reversible, fixed width)."""
    if not key.startswith(":") and _MLFLOW_KEY.fullmatch(key) and not _path_unsafe(key):
        return key
    for keep in ("./", ""):  # escape '.' and '/' too only if MLflow's path check needs it
        body = "".join(c if _LITERAL.fullmatch(c) or c in keep else ":" + _b36(ord(c)) for c in key)
        if not _path_unsafe(":" + body):
            break
    if len(body) + 1 > MAX_KEY:
        raise errors.InvalidInputError(
            f"key {key[:40]!r}... needs {len(body) + 1} characters once escaped for MLflow, "
            f"which allows {MAX_KEY}: use fewer characters outside letters, digits and '_-. /'"
        )
    return ":" + body


def decode_key(stored: str) -> str:
    """Reverse :func:`encode_key`; keys written by others come back as they are."""
    body = stored[1:]
    if not stored.startswith(":") or body.count(":") != len(_ESCAPE.findall(body)):
        return stored
    try:
        key = _ESCAPE.sub(lambda m: chr(int(m.group(1), 36)), body)
        return key if encode_key(key) == stored else stored
    except (ValueError, errors.InvalidInputError):
        return stored


def inf_key(stored: str) -> str:
    """The companion metric of ``stored``: ±1 at the step and time where it was ±inf."""
    key = INF_PREFIX + stored
    return key if len(key) <= MAX_KEY else INF_PREFIX + "sha1-" + _sha1(stored)


def unclamp(value: float, sign: float | None) -> float:
    """±inf again for a clamped ±max with a companion point (``sign``)."""
    return math.copysign(math.inf, value) if sign is not None and abs(value) == _MAX else value


def long_value_path(kind: str, stored_key: str) -> str:
    """Where an over-long param or tag value goes (``kind``: params or tags)."""
    plain = re.fullmatch(r"[\w\-][\w.\-]*", stored_key)
    return f"{INTERNAL_DIR}/long_{kind}/{stored_key if plain else 'sha1-' + _sha1(stored_key)}.txt"


def manifest_key(path: str) -> str:
    """The tag holding the manifest entry of the artifact at ``path``."""
    return MANIFEST_PREFIX + _sha1(path)


def manifest_tag(entry: ArtifactEntry) -> tuple[str, str]:
    value = json.dumps([entry.path, entry.size, entry.checksum, entry.mtime])
    return manifest_key(entry.path), value


def batches(
    params: list[Any], metrics: list[Any], tags: list[Any]
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """Split ``(key, value, …)`` items into log_batch calls within MLflow's limits; params
    come first and alone, as they are what MLflow may refuse (a conflicting value)."""
    params, metrics, tags = list(params), list(metrics), list(tags)
    while params or metrics or tags:
        p, budget = _take(params, MAX_PARAMS_TAGS, MAX_BATCH_BYTES)
        t: list[Any] = []
        m: list[Any] = []
        if not params:
            t, budget = _take(tags, MAX_PARAMS_TAGS, budget)
            m, budget = _take(metrics, min(MAX_METRICS, MAX_ENTITIES - len(p) - len(t)), budget)
        yield p, m, t


def _take(items: list[Any], limit: int, budget: int) -> tuple[list[Any], int]:
    n = 0
    while n < min(limit, len(items)):
        size = 64 + len(str(items[n][0]).encode()) + len(str(items[n][1]).encode())
        if n and size > budget:
            break
        budget -= size
        n += 1
    taken = items[:n]
    del items[:n]
    return taken, budget


def _path_unsafe(key: str) -> bool:
    # MLflow's path_not_unique: names may become file names, so they must be normal paths.
    norm = posixpath.normpath(key)
    return norm != key or norm == "." or norm.startswith("..") or norm.startswith("/")


def _b36(n: int) -> str:
    out = ""
    for _ in range(4):
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------------------------- artifacts


class MLflowArtifacts:
    """Artifacts of the runs of one :class:`~tracker.backends.mlflow.MLflowExpManager`."""

    validate_path = staticmethod(validate_path)

    def __init__(self, manager: MLflowExpManager) -> None:
        self._m = manager

    # ---------------------------------------------------------------------------------- writing

    def put_bytes(self, prefix: str, path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` at ``path`` (replacing it); returns size, sha256 checksum, mtime."""
        return self.write(self.run_id(prefix), validate_path(path), data)

    def write(self, run_id: str, rel: str, data: bytes) -> ArtifactEntry:
        """MLflow uploads files, not bytes: write a temp file named like the artifact."""
        with tempfile.TemporaryDirectory(prefix="tracker-mlflow-") as tmp:
            local = os.path.join(tmp, posixpath.basename(rel))
            with open(local, "wb") as f:
                f.write(data)
            self._log(run_id, local, posixpath.dirname(rel) or None)
        checksum = "sha256:" + hashlib.sha256(data).hexdigest()
        return ArtifactEntry(rel, len(data), checksum, now_ms())

    def put_file(
        self, prefix: str, local_path: str, artifact_path: str | None = None
    ) -> ArtifactEntry:
        """Store a local file as ``<artifact_path>/<basename>`` (None: top level)."""
        if os.path.isdir(local_path):
            raise errors.InvalidInputError(f"{local_path!r} is a directory; use put_dir")
        rel = join_path(artifact_path, os.path.basename(local_path))
        run_id = self.run_id(prefix)
        size, checksum = _file_digest(local_path)
        self._log(run_id, local_path, posixpath.dirname(rel) or None)
        return ArtifactEntry(rel, size, checksum, now_ms())

    def put_dir(
        self, prefix: str, local_dir: str, artifact_path: str | None = None
    ) -> list[ArtifactEntry]:
        """Store a directory's files, recursively, under ``artifact_path``."""
        files = dir_files(local_dir, artifact_path)
        run_id = self.run_id(prefix)
        entries = [ArtifactEntry(r, *_file_digest(str(f)), now_ms()) for f, r in files]
        folder = None if artifact_path is None else validate_path(artifact_path)
        with self._m.mlflow_errors():
            self._m.client.log_artifacts(run_id, local_dir, folder)
        return entries

    def delete_prefix(self, prefix: str) -> None:
        """Remove a run's whole artifact directory; a missing run or directory is fine."""
        uri = self._m.artifact_location(self.run_id(prefix), missing_ok=True)
        if uri is None:
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(uri, tracking_uri=self._m.tracking_uri)
        with contextlib.suppress(FileNotFoundError):
            repo.delete_artifacts()

    # ---------------------------------------------------------------------------------- reading

    def get_bytes(self, prefix: str, path: str) -> bytes:
        """The file at ``path``; ArtifactNotFound if there is none (directories don't count)."""
        run_id, rel = self.run_id(prefix), validate_path(path)
        with tempfile.TemporaryDirectory(prefix="tracker-mlflow-") as tmp:
            local = self._download(run_id, rel, tmp)
            if not os.path.isfile(local):
                raise errors.ArtifactNotFound(f"no artifact file {rel!r} in run {run_id}")
            return Path(local).read_bytes()

    def open(self, prefix: str, path: str) -> IO[bytes]:
        """The file at ``path`` for reading (MLflow downloads it whole first)."""
        return io.BytesIO(self.get_bytes(prefix, path))

    def digest(self, prefix: str, path: str) -> tuple[int, str]:
        """Size and ``"sha256:<hex>"`` of the stored file at ``path``."""
        with self.open(prefix, path) as f:
            return HashingReader(f).finish()

    def read_internal(self, run_id: str, rel: str) -> bytes:
        """A file the adapter stored for itself (no path validation: ``.tracker/...``)."""
        with tempfile.TemporaryDirectory(prefix="tracker-mlflow-") as tmp:
            return Path(self._download(run_id, rel, tmp)).read_bytes()

    def exists(self, prefix: str, path: str) -> bool:
        """Whether a file or directory exists at ``path`` in the run (a purged run has none)."""
        run_id, rel = self.run_id(prefix), validate_path(path)
        if self._m.artifact_location(run_id, missing_ok=True) is None:
            return False
        parent = posixpath.dirname(rel) or None
        with self._m.mlflow_errors():
            return any(f.path == rel for f in self._m.client.list_artifacts(run_id, parent))

    def list_artifacts(self, prefix: str, path: str | None = None) -> list[ArtifactEntry]:
        """The files under ``path`` (None: the whole run), recursively, sorted by path;
        ``checksum`` is ``""`` (MLflow keeps none) and ``mtime`` 0."""
        rel = None if path is None else validate_path(path)
        return self.walk(self.run_id(prefix), rel)

    def walk(self, run_id: str, rel: str | None = None) -> list[ArtifactEntry]:
        out: list[ArtifactEntry] = []
        pending = [rel]
        with self._m.mlflow_errors():
            while pending:
                folder = pending.pop()
                for f in self._m.client.list_artifacts(run_id, folder):
                    if rel is None and f.path.split("/", 1)[0] == INTERNAL_DIR:
                        continue
                    if f.is_dir:
                        pending.append(f.path)
                    else:
                        out.append(ArtifactEntry(f.path, int(f.file_size or 0), "", 0))
        if rel is not None and not out:  # ``rel`` may be a file rather than a folder
            return [e for e in self.walk(run_id, posixpath.dirname(rel) or None) if e.path == rel]
        return sorted(out, key=lambda e: e.path)

    def download(
        self,
        prefix: str,
        path: str | None = None,
        dst_dir: str | None = None,
        check: Callable[[str, int, str], None] | None = None,
    ) -> str:
        """A local path of the file or directory ``path`` (None: the whole run).

        With ``dst_dir`` None, a local artifact location gives the path in place and a remote
        one downloads to a fresh temp directory; otherwise it is copied into ``dst_dir`` as
        ``dst_dir/<basename>``. Each downloaded file goes to ``check(artifact path, size,
        checksum)``, which may raise to refuse it, before it is moved into place. Raises
        ArtifactNotFound when nothing is at ``path``."""
        rel = None if path is None else validate_path(path)
        run_id = self.run_id(prefix)
        local_root = self.local_dir(prefix)
        if dst_dir is None and local_root is not None:
            target = os.path.join(local_root, *rel.split("/")) if rel else local_root
            if not os.path.exists(target):
                raise errors.ArtifactNotFound(f"no artifact at {self.url(prefix, rel)}")
            return target
        parent = dst_dir if dst_dir is not None else tempfile.mkdtemp(prefix="tracker-artifacts-")
        os.makedirs(parent, exist_ok=True)
        target = os.path.join(parent, posixpath.basename(rel)) if rel else parent
        # Stage beside the target (same filesystem), as MLflow lays remote downloads out by
        # their full path while the contract wants ``dst_dir/<basename>``.
        with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=parent) as stage:
            got = self._download(run_id, rel or "", stage)
            if check is not None:
                _check_staged(got, rel or "", check)
            if os.path.isdir(got):
                shutil.copytree(got, target, dirs_exist_ok=True)
            else:
                os.replace(got, target)
        return target

    def stale_temp_files(self, older_than: float = 0) -> list[tuple[str, int]]:
        """None: MLflow writes a run's files itself."""
        return []

    def url(self, prefix: str, path: str | None = None) -> str:
        """The run's artifact URI, or that of one artifact in it."""
        base = self._m.artifact_location(self.run_id(prefix)) or ""
        return base if path is None else f"{base.rstrip('/')}/{validate_path(path)}"

    def local_dir(self, prefix: str) -> str | None:
        """The run's artifact directory as a local path, or None when MLflow keeps it remote."""
        uri = self._m.artifact_location(self.run_id(prefix)) or ""
        if uri.startswith("file:"):
            from mlflow.utils.file_utils import local_file_uri_to_path

            return os.path.abspath(local_file_uri_to_path(uri))
        if "://" not in uri and ":" not in uri.split("/", 1)[0]:
            return os.path.abspath(uri)
        return None

    # --------------------------------------------------------- long values and the manifest

    def shorten(self, run_id: str, kind: str, stored_key: str, value: str, limit: int) -> str:
        """A value MLflow can hold: itself, or a pointer to an artifact holding it whole."""
        if len(value) <= limit and not value.startswith(POINTER):
            return value
        path = long_value_path(kind, stored_key)
        self.write(run_id, path, value.encode())
        return POINTER + path

    def resolve(self, run_id: str, value: str) -> str:
        """Reverse :meth:`shorten`."""
        if not value.startswith(POINTER):
            return value
        return self.read_internal(run_id, value[len(POINTER) :]).decode()

    def manifest(self, run_id: str, tags: dict[str, str]) -> list[ArtifactEntry]:
        """The manifest kept in the run's tags, plus files MLflow lists that it lacks (logged
        by MLflow itself), whose checksum is then ``""``."""
        found = {}
        for key, value in tags.items():
            if key.startswith(MANIFEST_PREFIX):
                entry = _entry(json.loads(self.resolve(run_id, value)))
                if entry is not None:
                    found[entry.path] = entry
        for entry in self.walk(run_id):
            found.setdefault(entry.path, entry)
        return sorted(found.values(), key=lambda e: e.path)

    # ---------------------------------------------------------------------------------- helpers

    @staticmethod
    def run_id(prefix: str) -> str:
        """``"<exp>/<run>/artifacts"`` -> ``"<run>"``."""
        parts = validate_path(prefix, what="artifact prefix").split("/")
        if len(parts) != 3 or parts[2] != "artifacts":
            raise errors.InvalidArtifactPath(
                f"artifact prefix {prefix!r} is not '<experiment>/<run>/artifacts'"
            )
        return parts[1]

    def _log(self, run_id: str, local: str, folder: str | None) -> None:
        with self._m.mlflow_errors():
            self._m.client.log_artifact(run_id, local, folder)

    def _download(self, run_id: str, rel: str, dst: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return str(self._m.client.download_artifacts(run_id, rel, dst))
        except (MlflowException, OSError) as e:
            raise errors.ArtifactNotFound(f"no artifact {rel!r} in run {run_id}: {e}") from e


def _check_staged(got: str, rel: str, check: Callable[[str, int, str], None]) -> None:
    # MLflow offers no hook on its download stream: the staged copies are hashed instead.
    if not os.path.isdir(got):
        check(rel, *_file_digest(got))
        return
    for file in sorted(p for p in Path(got).rglob("*") if p.is_file()):
        sub = file.relative_to(got).as_posix()
        check(f"{rel}/{sub}" if rel else sub, *_file_digest(str(file)))


def _file_digest(path: str) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    for chunk in _chunks(path):
        h.update(chunk)
        size += len(chunk)
    return size, "sha256:" + h.hexdigest()


def _chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def _entry(value: Any) -> ArtifactEntry | None:
    try:
        path, size, checksum, mtime = value
        return ArtifactEntry(str(path), int(size), str(checksum), int(mtime))
    except (TypeError, ValueError):
        return None
