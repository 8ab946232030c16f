"""Artifact files on the local disk, written atomically: through a temp file in the same folder,
renamed into place, so that a process killed mid-write never leaves a partial artifact; and
recognising the temp files such a process leaves."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator
from typing import Any

#: Local writes go through ``<dir>/.tracker-tmp-<pid>@<host>.<random>``; names with this prefix
#: are reserved, hidden from listings and removed by
#: :meth:`tracker.artifacts.ArtifactStore.stale_temp_files`' caller (``tracker gc``) once their
#: writer is gone.
TEMP_PREFIX = ".tracker-tmp-"

_CHUNK = 1 << 20
_HOST = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname())[:64]
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)@([A-Za-z0-9.-]*)\.[0-9a-f]+")


def temp_name() -> str:
    return f"{TEMP_PREFIX}{os.getpid()}@{_HOST}.{secrets.token_hex(8)}"


def writer_gone(name: str) -> bool:
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


def read_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(_CHUNK), b"")


def digest(chunks: Iterable[bytes], sink: Any = None) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    for chunk in chunks:
        if sink is not None:
            sink.write(chunk)
        h.update(chunk)
        size += len(chunk)
    return size, "sha256:" + h.hexdigest()


def atomic_write(full: str, chunks: Iterable[bytes]) -> tuple[int, str]:
    # os.replace is atomic within a filesystem: readers see the old or the new file, and a
    # process killed mid-write leaves at most a TEMP_PREFIX file, never a partial artifact.
    parent = os.path.dirname(full)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, temp_name())
    # O_EXCL never clobbers another writer's temp file; mode 0o666 lets the umask decide the
    # permissions as a plain open() would (mkstemp forces 0600, surprising for shared roots).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            size, checksum = digest(chunks, sink=f)
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
