"""Writing one imported run, all or nothing: shared by every importer (bundles, MLflow).

A run being imported is SCHEDULED, its pid is the importing process and its host reads
``"<hostname> (importing)"``; it gets the source's status, times, lifecycle, pid and host
in one last update, which publishes it. The mark lives in the run's own row, so creating
the run marked and publishing it are each a single transaction: whatever moment an import
is killed at, the run is either absent, marked, or complete. A later import replaces a
marked run whose importer is gone (see :func:`import_state`) and leaves alone one that
another process is still writing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

from tracker.entities import ArtifactEntry, Metric, RunInfo, RunStatus
from tracker.errors import AlreadyExistsError, ImportConflict, RunNotFound
from tracker.manager import ExpManager, now_ms

METRIC_CHUNK = 10_000  # points per log_batch: one bounded transaction each
#: The end of a run's host while an import writes it.
IMPORTING = " (importing)"
#: An import beats the run's heartbeat this often (seconds) while it writes it ...
BEAT_EVERY = 30.0
#: ... and one not heard of for this long is taken for dead, wherever it ran. On its own
#: machine an importer is known dead as soon as its process is gone.
STALE_AFTER = 600.0

#: absent; complete; importing (a live import is writing it); abandoned (an import that
#: died left it half-written: the next import replaces it).
ImportState = Literal["absent", "complete", "importing", "abandoned"]


def import_state(manager: ExpManager, run_id: str) -> ImportState:
    """Where ``run_id`` stands in ``manager``, as far as an import of it is concerned."""
    try:
        info = manager.get_run_info(run_id)
    except RunNotFound:
        return "absent"
    if not (info.host or "").endswith(IMPORTING):
        return "complete"
    heard = info.heartbeat or 0
    if heard < now_ms() - STALE_AFTER * 1000:
        return "abandoned"
    if info.host == _importing_host() and not _alive(info.pid):
        return "abandoned"
    return "importing"


def write_run(
    manager: ExpManager,
    exp_id: str,
    info: RunInfo,
    params: dict[str, str],
    tags: dict[str, str],
    metrics: Sequence[Metric],
    put_artifacts: Callable[[RunInfo], Iterable[ArtifactEntry]],
) -> list[ArtifactEntry] | None:
    """Create a run with ``info``'s id and contents; None if a complete run (or one another
    live import is writing) has that id.

    The run is created marked (see the module docstring), replacing a run an import that
    died left half-written, and filled: params, tags, metrics, then the files
    ``put_artifacts`` stores (it yields their manifest entries). Only then is it published
    with ``info``'s status, times, lifecycle, pid and host. A failure purges the
    half-written run, so that a second import does not skip it as done; a kill leaves it
    marked, and the next import replaces it."""
    created = _create(manager, exp_id, info)
    if created is None:
        return None
    run_id = created.run_id
    try:
        with _beating(manager, run_id):
            manager.log_batch(run_id, params=params, tags=tags)
            for i in range(0, len(metrics), METRIC_CHUNK):
                manager.log_batch(run_id, metrics=metrics[i : i + METRIC_CHUNK])
            entries = list(put_artifacts(created))
        _check_ours(manager, run_id)
        if entries:
            manager.record_artifacts(run_id, entries)
        _publish(manager, info)
    except BaseException:
        with contextlib.suppress(Exception):
            _check_ours(manager, run_id)  # never purge a run another import holds now
            manager.purge_run(run_id)
        raise
    return entries


def _create(manager: ExpManager, exp_id: str, info: RunInfo) -> RunInfo | None:
    """The run, created marked, or None if its id is taken by a run not to replace."""
    for _ in range(2):
        try:
            # RUNNING at first, because that sets the heartbeat in the same insert: a marked
            # run always has one to be judged by. SCHEDULED next, so that `tracker reap`
            # never takes the import's run for a dead training process.
            manager.create_run(
                exp_id,
                info.name,
                RunStatus.RUNNING,
                start_time=info.start_time,
                pid=os.getpid(),
                host=_importing_host(),
                run_id=info.run_id,
            )
            return manager.update_run(info.run_id, status=RunStatus.SCHEDULED)
        except AlreadyExistsError:
            if import_state(manager, info.run_id) != "abandoned":
                return None
            with contextlib.suppress(RunNotFound):  # another import may clear it first
                manager.purge_run(info.run_id)
    return None


def _publish(manager: ExpManager, info: RunInfo) -> None:
    if info.status is not RunStatus.SCHEDULED:
        manager.update_run(info.run_id, status=RunStatus.RUNNING)  # SCHEDULED -/-> FINISHED
    manager.update_run(
        info.run_id,
        status=info.status,
        lifecycle=info.lifecycle,
        start_time=info.start_time,
        end_time=info.end_time,
        heartbeat=info.heartbeat,
        pid=info.pid,
        host=info.host,
    )


def _check_ours(manager: ExpManager, run_id: str) -> None:
    """Raise ImportConflict unless this process's import still holds the run (another may
    have replaced it after this one went unheard of for STALE_AFTER)."""
    info = manager.get_run_info(run_id)
    if (info.pid, info.host) != (os.getpid(), _importing_host()):
        raise ImportConflict(
            f"run {run_id} was replaced by another import while this one wrote it "
            f"(it now belongs to pid {info.pid} on {info.host!r}); import again to check it"
        )


@contextlib.contextmanager
def _beating(manager: ExpManager, run_id: str) -> Iterator[None]:
    """Keep the run's heartbeat fresh while the body runs (one big file can take minutes);
    stopped before publishing, which sets the source's heartbeat."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT_EVERY):
            with contextlib.suppress(Exception):  # a missed beat only ages the run
                manager.update_run(run_id, heartbeat=now_ms())

    thread = threading.Thread(target=beat, name=f"tracker-import-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _importing_host() -> str:
    return socket.gethostname() + IMPORTING


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if os.name == "nt":
        return True  # os.kill would end it: judged by its heartbeat alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
