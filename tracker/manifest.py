"""Keeping a run's artifact manifest (path, size and sha256 of each file, in the store's
database) in step with the stored bytes.

Writes go forget → store → record: an overwritten file loses its entry before its bytes change
and gets the new one once they are fully stored (a local rename or a single PUT makes them
appear whole), so the manifest never pairs one version's checksum with another version's bytes.
A process killed in between leaves a file the manifest does not list, never a wrong entry;
``tracker verify --repair`` records it.

Reads hash the bytes as they stream and compare them with the entry (:func:`read_checked`,
:func:`download_check`); :func:`check_run` and :func:`repair` compare a whole run
(``tracker verify``). Files without an entry, or with an entry without a checksum (files MLflow
logged itself), are read unchecked.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TypeVar

from tracker.artifacts import HashingReader
from tracker.entities import ArtifactEntry, RunInfo
from tracker.errors import ArtifactChecksumError, ArtifactNotFound, LoadObjectError
from tracker.manager import ExpManager

T = TypeVar("T")

_READ_BUFFER = 1 << 20
# A read whose entry changed meanwhile (another process saved the artifact) is read again.
_READ_ATTEMPTS = 3


def store_recorded(
    manager: ExpManager,
    run_id: str,
    paths: Sequence[str],
    write: Callable[[], Iterable[ArtifactEntry]],
) -> None:
    """Forget the entries of ``paths``, then store the files (``write()`` returns their entries;
    an iterator of them may store each as it is consumed) and record those stored, also when a
    later one fails."""
    manager.forget_artifacts(run_id, paths)
    stored: list[ArtifactEntry] = []
    try:
        stored.extend(write())
    finally:
        if stored:
            manager.record_artifacts(run_id, stored)


def read_checked(
    manager: ExpManager, info: RunInfo, path: str, consume: Callable[[IO[bytes]], T]
) -> T:
    """``consume(file)`` on the artifact at ``path`` while its bytes are hashed, then check
    them (a tail left unread included) against the manifest.

    A LoadObjectError from ``consume`` is raised only once the bytes checked out: a changed
    file raises ArtifactChecksumError instead, naming both checksums."""
    store = manager.artifacts
    rel = store.validate_path(path)
    for _ in range(_READ_ATTEMPTS):
        recorded = _recorded(manager, info.run_id, rel)
        with store.open(info.artifact_prefix, rel) as raw:
            reader = HashingReader(raw)
            try:
                result, error = consume(io.BufferedReader(reader, _READ_BUFFER)), None
            except LoadObjectError as e:
                result, error = None, e
            stored = reader.finish()
        if _matches(recorded, *stored):
            if error is not None:
                raise error
            return result  # type: ignore[return-value]
        if _recorded(manager, info.run_id, rel) == recorded:
            raise ArtifactChecksumError(_changed(info.run_id, rel, recorded, *stored)) from error
    raise ArtifactChecksumError(
        f"artifact {rel!r} of run {info.run_id} changed {_READ_ATTEMPTS} times while it was "
        "read (another process keeps saving it); read it again later"
    )


def download_check(manager: ExpManager, run_id: str) -> Callable[[str, int, str], None]:
    """A ``check`` for :meth:`tracker.artifacts.ArtifactStore.download` against the run's
    manifest."""
    entries = {e.path: e for e in manager.list_artifact_entries(run_id)}

    def check(path: str, size: int, checksum: str) -> None:
        recorded = entries.get(path)
        if not _matches(recorded, size, checksum):
            raise ArtifactChecksumError(_changed(run_id, path, recorded, size, checksum))

    return check


# ------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class Mismatch:
    """A file whose manifest entry (``recorded``) and stored bytes (``stored``) disagree.

    ``problem``: ``missing`` (recorded, not stored), ``unrecorded`` (stored, not recorded),
    ``size``, ``checksum``, or ``no checksum`` (recorded without one)."""

    run_id: str
    path: str
    problem: str
    recorded: ArtifactEntry | None
    stored: ArtifactEntry | None


@dataclass(frozen=True)
class RunCheck:
    """What :func:`check_run` read of a run: its files (stored or recorded), their stored
    bytes, and the mismatches."""

    run_id: str
    files: int
    bytes: int
    mismatches: list[Mismatch]


def check_run(manager: ExpManager, info: RunInfo) -> RunCheck:
    """Compare every manifest entry of the run with the stored file, reading each file once."""
    store = manager.artifacts
    recorded = {e.path: e for e in manager.list_artifact_entries(info.run_id)}
    listed = {e.path: e for e in store.list_artifacts(info.artifact_prefix)}
    found = []
    for path in sorted(recorded.keys() | listed.keys()):
        stored = None
        if path in listed:
            try:
                size, checksum = store.digest(info.artifact_prefix, path)
                stored = ArtifactEntry(path, size, checksum, listed[path].mtime)
            except ArtifactNotFound:  # deleted since the listing
                pass
        problem = _problem(recorded.get(path), stored)
        if problem:
            found.append(Mismatch(info.run_id, path, problem, recorded.get(path), stored))
    total = sum(e.size for e in listed.values())
    return RunCheck(info.run_id, len(recorded.keys() | listed.keys()), total, found)


def repair(manager: ExpManager, mismatches: Sequence[Mismatch]) -> None:
    """Make the manifest describe the stored bytes: record what is stored, forget what is not."""
    for run_id in dict.fromkeys(m.run_id for m in mismatches):
        mine = [m for m in mismatches if m.run_id == run_id]
        manager.forget_artifacts(run_id, [m.path for m in mine if m.stored is None])
        manager.record_artifacts(run_id, [m.stored for m in mine if m.stored is not None])


def _problem(recorded: ArtifactEntry | None, stored: ArtifactEntry | None) -> str | None:
    if stored is None:
        return "missing"
    if recorded is None:
        return "unrecorded"
    if recorded.size != stored.size:
        return "size"
    if not recorded.checksum:
        return "no checksum"
    return "checksum" if recorded.checksum != stored.checksum else None


# ----------------------------------------------------------------------------------- helpers


def _recorded(manager: ExpManager, run_id: str, path: str) -> ArtifactEntry | None:
    return next((e for e in manager.list_artifact_entries(run_id) if e.path == path), None)


def _matches(recorded: ArtifactEntry | None, size: int, checksum: str) -> bool:
    if recorded is None or not recorded.checksum:
        return True  # nothing recorded to check against
    return (recorded.size, recorded.checksum) == (size, checksum)


def _changed(
    run_id: str, path: str, recorded: ArtifactEntry | None, size: int, checksum: str
) -> str:
    assert recorded is not None
    return (
        f"artifact {path!r} of run {run_id} was changed outside tracker: it holds {checksum} "
        f"({size} bytes), its manifest recorded {recorded.checksum} ({recorded.size} bytes); "
        f"restore the file, or record it as it is with `tracker verify --repair {run_id}`"
    )
