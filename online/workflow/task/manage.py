"""Qlib's ``TaskManager`` on the tracker's SQL store instead of MongoDB (``run_task``, the
worker loop, is in :mod:`.worker` and importable from here, as in Qlib).

A task pool is a set of rows in the ``task_queue`` table of the same database as the runs
(a SQLite file on one machine, PostgreSQL across machines), kept by :mod:`.queue`. Fixes over
Qlib:

* leases: a fetched task carries ``lease_until``, renewed by a thread while it runs; once a
  worker dies its task goes back to the queue by itself (and the run it was filling back to
  ``SCHEDULED``), so nobody resets stuck tasks by hand;
* a task that keeps failing ends ``failed`` after ``max_attempts``, with its error kept;
* dedupe by a canonical hash, so dict key order does not matter;
* ``wait`` stops with an error when no worker makes progress instead of polling forever.

As in Qlib, ``create_task`` returns the ids of tasks that already exist whatever their status:
a ``done`` task is not run again (``reset_status`` it to run it again).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tracker.entities import RunStatus
from tracker.errors import (
    InvalidInputError,
    InvalidStateError,
    LeaseLost,
    NotFoundError,
    TaskFuncError,
    TrackerError,
    WaitTimeout,
)
from tracker.manager import ExpManager, now_ms
from tracker.online import progress as _progress
from tracker.online.workflow.task import document as doc
from tracker.online.workflow.task.document import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PART_DONE,
    STATUS_RUNNING,
    STATUS_WAITING,
)
from tracker.online.workflow.task.lease import LeaseKeeper
from tracker.online.workflow.task.queue import TaskQueue, sql_queue
from tracker.uri import mask

__all__ = [
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_PART_DONE",
    "STATUS_RUNNING",
    "STATUS_WAITING",
    "LeaseLost",
    "TaskFuncError",
    "TaskManager",
    "WaitTimeout",
    "pool_counts",
]

log = logging.getLogger(__name__)
DEFAULT_LEASE = 60.0
DEFAULT_MAX_ATTEMPTS = 3
_ERROR_CHARS = 8000


def worker_id() -> str:
    """``host:pid`` of this process (computed each time: a forked child has its own)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class TaskManager:
    """The tasks of one pool: the queue policy (dedupe, leases, attempts, the runs of the
    tasks) over a :class:`~tracker.online.workflow.task.queue.TaskQueue`. ``manager``: a SQL
    store (default: the one ``R`` uses), whose database keeps the queue unless ``queue`` is
    given.

    Args:
        lease_seconds: how long a fetched task stays ours without a heartbeat; a thread renews
            it every third of that while the task runs.
        max_attempts: failures (exceptions or lost leases) before a task is marked failed.
    """

    STATUS_WAITING = STATUS_WAITING
    STATUS_RUNNING = STATUS_RUNNING
    STATUS_PART_DONE = STATUS_PART_DONE
    STATUS_DONE = STATUS_DONE
    STATUS_FAILED = STATUS_FAILED

    def __init__(
        self,
        task_pool: str,
        manager: ExpManager | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        queue: TaskQueue | None = None,
    ) -> None:
        if not isinstance(task_pool, str) or not task_pool.strip() or len(task_pool) > 255:
            raise InvalidInputError(f"task pool name {task_pool!r} must be 1-255 characters")
        if manager is None:
            from tracker import R

            manager = R.exp_manager
        self.lease_seconds = _positive(lease_seconds, "lease_seconds")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInputError(f"max_attempts {max_attempts!r} must be an integer >= 1")
        self.max_attempts = max_attempts
        self.pool = task_pool
        self.manager = manager
        if queue is None:
            sql = sql_queue(manager)
            sql.ensure_table()
            queue = sql
        self.queue = queue

    def __repr__(self) -> str:
        return f"TaskManager(task_pool={self.pool!r}, uri={mask(self.manager.uri)!r})"

    # --------------------------------------------------------------------------------- create

    def create_task(
        self, task_def_l: Sequence[Any], dry_run: bool = False, print_nt: bool = False
    ) -> list[int | None]:
        """Insert the tasks not in the pool yet (by canonical hash) as ``waiting``; return
        every task's id, existing ones included (done or not). ``dry_run`` inserts nothing
        and returns None for the new ones."""
        hashes = [doc.task_hash(t) for t in task_def_l]  # all checked before anything is written
        ids = self._ids_by_hash(hashes)
        new: dict[str, Any] = {}
        for h, t in zip(hashes, task_def_l, strict=True):
            if h not in ids and h not in new:  # the first of equal tasks is the one stored
                new[h] = t
        log.info("task pool %r: %d tasks, %d new", self.pool, len(hashes), len(new))
        if print_nt:
            for task in new.values():
                print(task)
        if dry_run or not new:
            return [ids.get(h) for h in hashes]
        defs = {h: doc.dumps(t) for h, t in new.items()}
        self.queue.insert(self.pool, defs, self.max_attempts, now_ms())
        ids = self._ids_by_hash(hashes)
        return [ids[h] for h in hashes]

    def _ids_by_hash(self, hashes: list[str]) -> dict[str, int]:
        return self.queue.ids_by_hash(self.pool, hashes)

    # ---------------------------------------------------------------------------------- fetch

    def fetch_task(
        self,
        query: Mapping[str, Any] | None = None,
        status: str = STATUS_WAITING,
        *,
        lease_seconds: float | None = None,
    ) -> dict[str, Any] | None:
        """Atomically take the highest-priority (then oldest) task in ``status`` matching
        ``query`` and mark it running under this worker's lease; None if there is none.
        Tasks whose lease expired are reclaimed first."""
        status = doc.check_status(status)
        if status == STATUS_RUNNING:
            raise InvalidInputError("fetch_task: status must not be 'running' (that is taken)")
        query = {k: v for k, v in (query or {}).items() if k != "status"}  # Qlib: status wins
        lease = _ms(self._lease(lease_seconds))
        self.reclaim()
        now = now_ms()
        task = self.queue.fetch(self.pool, query, status, worker_id(), now + lease, now)
        return None if task is None else doc.decode(task, self.manager)

    @contextmanager
    def safe_fetch_task(
        self,
        query: Mapping[str, Any] | None = None,
        status: str = STATUS_WAITING,
        *,
        after_status: str = STATUS_DONE,
        lease_seconds: float | None = None,
    ) -> Iterator[dict[str, Any] | None]:
        """Fetch a task (possibly None) and hold its lease while the block runs. On success
        the result set in ``task["res"]`` is committed with ``after_status`` (unless the block
        committed itself); on an exception the attempt is counted and the task goes back
        (``failed`` after ``max_attempts``, error kept); on Ctrl-C/SIGTERM it goes back
        uncounted. The exception is re-raised."""
        lease = self._lease(lease_seconds)
        task = self.fetch_task(query, status, lease_seconds=lease)
        if task is None:
            yield None
            return
        keeper = LeaseKeeper(self, task, lease)
        keeper.start()
        try:
            yield task
        except Exception as e:
            keeper.stop()
            try:
                settled = self._record_failure(task, _error_text(e))
            except TrackerError as err:  # keep the task's own error; the lease will expire
                settled = f"not recorded: {err}"
            log.warning(
                "task %s of pool %r failed (now %s): %s", task["_id"], self.pool, settled, e
            )
            raise
        except BaseException:
            keeper.stop()
            try:
                self.return_task(task, task["fetched_from"])
            except TrackerError as e:  # keep the interrupt; the lease will expire anyway
                log.warning("task %s could not be returned: %s", task["_id"], e)
            raise
        keeper.stop()
        self._settle(task, self._res_values(task.get("res"), after_status), strict=True)

    def reclaim(self) -> list[int]:
        """Send tasks whose lease expired back to where they were fetched from (``failed``
        after ``max_attempts``); their runs go back to SCHEDULED (KILLED if failed)."""
        rows = self.queue.reclaim(self.pool, now_ms())
        for row in rows:
            log.warning("task %s of pool %r: lease expired, now %s", row.id, self.pool, row.status)
            self._release_run(row.run_id, requeued=row.status != STATUS_FAILED)
        return [row.id for row in rows]

    def heartbeat(self, task: Mapping[str, Any] | int, lease_seconds: float | None = None) -> bool:
        """Extend this worker's lease on a running task; False if it is no longer ours."""
        now = now_ms()
        until = now + _ms(self._lease(lease_seconds))
        return self.queue.renew(doc.task_id(task), worker_id(), until, now)

    def attach_run(self, task: Mapping[str, Any], run_id: str) -> bool:
        """Record the run the worker holding ``task`` is filling (done automatically for the
        run ``R`` starts while the task runs). A run a previous, dead worker left SCHEDULED
        for this task is marked KILLED with tag ``tracker.replaced_by``."""
        tid, holder = doc.task_id(task), task.get("worker") or worker_id()
        held = self.queue.attach_run(tid, holder, run_id)
        if held.written:
            self._run_changed(tid, held.run_id, run_id)
        return held.written

    def _run_changed(self, tid: int, old_id: str | None, run_id: str) -> None:
        """Tag the task's new run; kill the run a dead worker left SCHEDULED (replaced)."""
        if old_id == run_id:
            return
        tags = {"tracker.task_pool": self.pool, "tracker.task_id": str(tid)}
        self._best_effort(self.manager.set_tags, run_id, tags)
        try:
            replaced = old_id is not None and (
                self.manager.get_run_info(old_id).status is RunStatus.SCHEDULED
            )
        except NotFoundError:  # purged meanwhile
            replaced = False
        if replaced:
            self._best_effort(self.manager.set_tags, old_id, {"tracker.replaced_by": run_id})
            self._best_effort(
                self.manager.update_run,
                old_id,
                status=RunStatus.KILLED,
                expect=[RunStatus.SCHEDULED],
                end_time=now_ms(),
            )

    # --------------------------------------------------------------------------------- settle

    def commit_task_res(self, task: Mapping[str, Any], res: Any, status: str = STATUS_DONE) -> None:
        """Store the result and set ``status``. A Recorder is stored as its ids and comes back
        as a Recorder of this store. Raises LeaseLost if another worker holds the task now."""
        self._settle(task, self._res_values(res, doc.check_status(status)), strict=False)

    def return_task(self, task: Mapping[str, Any], status: str = STATUS_WAITING) -> None:
        """Give a task back without a result (no attempt counted)."""
        values = {"status": doc.check_status(status), "worker": None, "lease_until": None}
        self._settle(task, values, strict=False)

    def _res_values(self, res: Any, status: str) -> dict[str, Any]:
        stored = doc.to_storable(res)
        values = {
            "status": status,
            "res": doc.dumps(stored),
            "worker": None,
            "lease_until": None,
            "attempts": 0,
        }
        if doc.run_id_of(stored):
            values["run_id"] = doc.run_id_of(stored)
        return values

    def _settle(self, task: Mapping[str, Any], values: dict[str, Any], *, strict: bool) -> bool:
        """Write ``values`` unless another worker holds the task (LeaseLost); with ``strict``
        only if this worker still holds it (the block may have committed already)."""
        tid = doc.task_id(task)
        held = self.queue.settle(self.pool, tid, worker_id(), values, now_ms(), strict)
        if held.written and values.get("run_id"):  # a Recorder result: maybe not seen yet
            self._run_changed(tid, held.run_id, values["run_id"])
        return held.written

    def _record_failure(self, task: Mapping[str, Any], error: str) -> str | None:
        return self.queue.record_failure(doc.task_id(task), worker_id(), error, now_ms())

    def _release_run(self, run_id: str | None, *, requeued: bool) -> None:
        """A dead worker's RUNNING run: SCHEDULED while its task waits again, else KILLED."""
        if not run_id:
            return
        if requeued:
            self._best_effort(
                self.manager.update_run,
                run_id,
                status=RunStatus.SCHEDULED,
                expect=[RunStatus.RUNNING],
            )
        else:
            self._best_effort(
                self.manager.update_run,
                run_id,
                status=RunStatus.KILLED,
                expect=[RunStatus.RUNNING],
                end_time=now_ms(),
            )

    @staticmethod
    def _best_effort(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (InvalidStateError, NotFoundError) as e:  # ended, reaped or purged meanwhile
            log.info("run update skipped: %s", e)

    # ---------------------------------------------------------------------------- maintenance

    def query(
        self, query: Mapping[str, Any] | None = None, decode: bool = True
    ) -> Iterator[dict[str, Any]]:
        """The matching tasks, oldest first (read at once: no cursor left open).
        ``decode=False`` leaves ``def`` and ``res`` pickled."""
        tasks = self.queue.query(self.pool, query)
        return (doc.decode(task, self.manager) if decode else task for task in tasks)

    def re_query(self, _id: Any) -> dict[str, Any]:
        found = list(self.query({"_id": doc.task_id(_id)}))
        if not found:
            raise NotFoundError(f"no task {_id!r} in task pool {self.pool!r}")
        return found[0]

    def remove(self, query: Mapping[str, Any] | None = None) -> int:
        """Delete the matching tasks (all of the pool by default); returns how many."""
        return self.queue.remove(self.pool, query)

    def reset_status(self, query: Mapping[str, Any] | None, status: str) -> int:
        """Set the matching tasks' status, clearing leases and attempts; runs of tasks taken
        from running go back to SCHEDULED (KILLED unless requeued). Returns how many."""
        status = doc.check_status(status)
        rows = self.queue.reset(self.pool, query, status, now_ms())
        requeued = status in (STATUS_WAITING, STATUS_PART_DONE)
        for row in rows:
            if row.status == STATUS_RUNNING and status != STATUS_RUNNING:
                self._release_run(row.run_id, requeued=requeued)
        return len(rows)

    def reset_waiting(self, query: Mapping[str, Any] | None = None) -> int:
        """Qlib's: running (by default) tasks back to waiting."""
        query = dict(query or {})
        query.setdefault("status", STATUS_RUNNING)
        return self.reset_status(query, STATUS_WAITING)

    def prioritize(self, task: Mapping[str, Any] | int, priority: int) -> None:
        """Higher priorities are fetched first (default 0)."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidInputError(f"priority {priority!r} must be an integer")
        tid = doc.task_id(task)
        if not self.queue.prioritize(self.pool, tid, priority):
            raise NotFoundError(f"no task {tid} in task pool {self.pool!r}")

    def task_stat(self, query: Mapping[str, Any] | None = None) -> dict[str, int]:
        """``{status: count}`` of the matching tasks (statuses with none are left out)."""
        return self._counts(query)[0]

    def _counts(self, query: Mapping[str, Any] | None) -> tuple[dict[str, int], int]:
        return self.queue.counts(self.pool, query, now_ms())

    def wait(
        self,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll: float = 1.0,
        progress: _progress.Progress | None = None,
    ) -> dict[str, int]:
        """Block until no matching task is waiting, running or part_done, reporting the
        settled tasks to ``progress`` (default: the installed renderer, a bar under the CLI);
        returns the final ``task_stat``. Raises WaitTimeout after ``timeout`` seconds
        (default: two leases) without progress: no task settled and no worker held a live
        lease (Qlib polled forever when no worker existed)."""
        limit = 2 * self.lease_seconds if timeout is None else _positive(timeout, "timeout")
        report = _progress.current(progress)
        total = sum(self._counts(query)[0].values())
        last_left, last_progress = -1, time.monotonic()
        while True:
            self.reclaim()
            counts, live = self._counts(query)
            left = sum(counts.get(s, 0) for s in (STATUS_WAITING, STATUS_RUNNING, STATUS_PART_DONE))
            if report is not None:
                report(f"task pool {self.pool}", max(0, min(total, total - left)), total)
            if left == 0:
                return counts
            now = time.monotonic()
            if live or left != last_left:
                last_left, last_progress = left, now
            elif now - last_progress >= limit:
                shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                raise WaitTimeout(
                    f"task pool {self.pool!r}: no progress for {limit:g} s ({shown}) and no "
                    f"worker holds a task: start one with `tracker worker --pool {self.pool}`"
                    " (or wait with a longer timeout)"
                )
            time.sleep(poll)

    def _lease(self, lease_seconds: float | None) -> float:
        return self.lease_seconds if lease_seconds is None else _positive(lease_seconds, "lease")

    def list(self) -> list[str]:  # last: the name would shadow the builtin in annotations
        """The names of the task pools in this store."""
        return self.queue.pools()


def pool_counts(
    manager: ExpManager | None = None, pools: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """``{pool: {status: count, "stale": running tasks whose lease expired}}``."""
    if manager is None:
        from tracker import R

        manager = R.exp_manager
    return sql_queue(manager).pool_stats(pools, now_ms())


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInputError(f"{what} {value!r} must be a number of seconds > 0")
    return float(value)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _error_text(e: BaseException) -> str:
    """``Type: message`` first (what an operator reads), then the traceback's end."""
    head = f"{type(e).__name__}: {e}"
    tb = "".join(traceback.format_exception(e))
    return (head + "\n\n" + tb[-_ERROR_CHARS:])[: _ERROR_CHARS + len(head) + 2]


def __getattr__(name: str) -> Any:
    """``run_task`` where Qlib keeps it (``qlib.workflow.task.manage``); it lives in
    :mod:`.worker`, which imports this module."""
    if name == "run_task":
        from tracker.online.workflow.task.worker import run_task

        return run_task
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
