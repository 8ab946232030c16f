"""Qlib's ``TaskManager`` and ``run_task`` on the tracker's SQL store instead of MongoDB.

A task pool is a set of rows in the ``task_queue`` table of the same database as the runs
(a SQLite file on one machine, PostgreSQL across machines). Fixes over Qlib:

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
import multiprocessing
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import delete, select, update

from tracker.backends.sql.db import Database
from tracker.entities import RunStatus
from tracker.errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    TrackerError,
)
from tracker.manager import ExpManager, now_ms
from tracker.online.workflow.task import queue as q
from tracker.online.workflow.task.queue import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PART_DONE,
    STATUS_RUNNING,
    STATUS_WAITING,
    TASKS,
    LeaseLost,
    T,
)
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
    "run_task",
]

log = logging.getLogger(__name__)
DEFAULT_LEASE = 60.0
DEFAULT_MAX_ATTEMPTS = 3
_WATCH = 0.1  # seconds between looks at the worker's active run (an in-memory check)
_ERROR_CHARS = 8000


class WaitTimeout(InvalidStateError, TimeoutError):
    """``wait`` saw no progress for its timeout: no worker is taking the pool's tasks."""


class TaskFuncError(TrackerError):
    """``task_func`` failed in its own process (``force_release=True``); carries its traceback."""


def worker_id() -> str:
    """``host:pid`` of this process (computed each time: a forked child has its own)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class TaskManager:
    """The tasks of one pool. ``manager``: a SQL store (default: the one ``R`` uses).

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
    ) -> None:
        if not isinstance(task_pool, str) or not task_pool.strip() or len(task_pool) > 255:
            raise InvalidInputError(f"task pool name {task_pool!r} must be 1-255 characters")
        if manager is None:
            from tracker import R

            manager = R.exp_manager
        self.db = _database(manager)
        self.pool = task_pool
        self.manager = manager
        self.lease_seconds = _positive(lease_seconds, "lease_seconds")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInputError(f"max_attempts {max_attempts!r} must be an integer >= 1")
        self.max_attempts = max_attempts
        q.ensure_table(self.db)

    def __repr__(self) -> str:
        return f"TaskManager(task_pool={self.pool!r}, uri={mask(self.manager.uri)!r})"

    # --------------------------------------------------------------------------------- create

    def create_task(
        self, task_def_l: Sequence[Any], dry_run: bool = False, print_nt: bool = False
    ) -> list[int | None]:
        """Insert the tasks not in the pool yet (by canonical hash) as ``waiting``; return
        every task's id, existing ones included (done or not). ``dry_run`` inserts nothing
        and returns None for the new ones."""
        hashes = [q.task_hash(t) for t in task_def_l]  # all checked before anything is written
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
        rows = q.new_rows(self.pool, new, self.max_attempts, now_ms())
        with self.db.write() as conn:
            q.insert_new(conn, self.db.dialect, rows)
        ids = self._ids_by_hash(hashes)
        return [ids[h] for h in hashes]

    def _ids_by_hash(self, hashes: list[str]) -> dict[str, int]:
        with self.db.read() as conn:
            return q.ids_by_hash(conn, self.pool, hashes)

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
        status = q.check_status(status)
        if status == STATUS_RUNNING:
            raise InvalidInputError("fetch_task: status must not be 'running' (that is taken)")
        query = {k: v for k, v in (query or {}).items() if k != "status"}  # Qlib: status wins
        clauses = q.where(self.pool, query)
        self.reclaim()
        now = now_ms()
        values = {
            "status": STATUS_RUNNING,
            "fetched_from": status,
            "worker": worker_id(),
            "lease_until": now + _ms(self._lease(lease_seconds)),
            "updated": now,
        }
        with self.db.write() as conn:
            row = q.fetch(conn, self.db.dialect, clauses, status, values)
        return None if row is None else q.row_to_task(row, self.manager)

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
        keeper = _Keeper(self, task, lease)
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
        with self.db.write() as conn:
            rows = q.reclaim(conn, self.pool, now_ms())
        for row in rows:
            log.warning("task %s of pool %r: lease expired, now %s", row.id, self.pool, row.status)
            self._release_run(row.run_id, requeued=row.status != STATUS_FAILED)
        return [row.id for row in rows]

    def heartbeat(self, task: Mapping[str, Any] | int, lease_seconds: float | None = None) -> bool:
        """Extend this worker's lease on a running task; False if it is no longer ours."""
        now = now_ms()
        until = now + _ms(self._lease(lease_seconds))
        with self.db.write() as conn:
            return q.renew(conn, q.task_id(task), worker_id(), until, now)

    def attach_run(self, task: Mapping[str, Any], run_id: str) -> bool:
        """Record the run the worker holding ``task`` is filling (done automatically for the
        run ``R`` starts while the task runs). A run a previous, dead worker left SCHEDULED
        for this task is marked KILLED with tag ``tracker.replaced_by``."""
        tid, holder = q.task_id(task), task.get("worker") or worker_id()
        with self.db.write() as conn:
            row = conn.execute(
                select(T.run_id, T.status, T.worker).where(T.id == tid).with_for_update()
            ).first()
            if row is None or row.status != STATUS_RUNNING or row.worker != holder:
                return False
            conn.execute(update(TASKS).where(T.id == tid).values(run_id=run_id))
        self._run_changed(tid, row.run_id, run_id)
        return True

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
        self._settle(task, self._res_values(res, q.check_status(status)), strict=False)

    def return_task(self, task: Mapping[str, Any], status: str = STATUS_WAITING) -> None:
        """Give a task back without a result (no attempt counted)."""
        values = {"status": q.check_status(status), "worker": None, "lease_until": None}
        self._settle(task, values, strict=False)

    def _res_values(self, res: Any, status: str) -> dict[str, Any]:
        stored = q.to_storable(res)
        values = {
            "status": status,
            "res": q.dumps(stored),
            "worker": None,
            "lease_until": None,
            "attempts": 0,
        }
        if q.run_id_of(stored):
            values["run_id"] = q.run_id_of(stored)
        return values

    def _settle(self, task: Mapping[str, Any], values: dict[str, Any], *, strict: bool) -> bool:
        """Write ``values`` unless another worker holds the task (LeaseLost); with ``strict``
        only if this worker still holds it (the block may have committed already)."""
        tid = q.task_id(task)
        with self.db.write() as conn:
            row = q.hold(conn, self.pool, tid, worker_id())
            if strict and row.status != STATUS_RUNNING:
                return False
            conn.execute(update(TASKS).where(T.id == tid).values(**values, updated=now_ms()))
        if values.get("run_id"):  # a Recorder result: the run may not have been seen yet
            self._run_changed(tid, row.run_id, values["run_id"])
        return True

    def _record_failure(self, task: Mapping[str, Any], error: str) -> str | None:
        with self.db.write() as conn:
            return q.record_failure(conn, q.task_id(task), worker_id(), error, now_ms())

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
        clauses = q.where(self.pool, query)
        with self.db.read() as conn:
            rows = conn.execute(select(TASKS).where(*clauses).order_by(T.id)).all()
        return (q.row_to_task(row, self.manager if decode else None) for row in rows)

    def re_query(self, _id: Any) -> dict[str, Any]:
        found = list(self.query({"_id": q.task_id(_id)}))
        if not found:
            raise NotFoundError(f"no task {_id!r} in task pool {self.pool!r}")
        return found[0]

    def remove(self, query: Mapping[str, Any] | None = None) -> int:
        """Delete the matching tasks (all of the pool by default); returns how many."""
        with self.db.write() as conn:
            return conn.execute(delete(TASKS).where(*q.where(self.pool, query))).rowcount

    def reset_status(self, query: Mapping[str, Any] | None, status: str) -> int:
        """Set the matching tasks' status, clearing leases and attempts; runs of tasks taken
        from running go back to SCHEDULED (KILLED unless requeued). Returns how many."""
        status = q.check_status(status)
        clauses = q.where(self.pool, query)
        with self.db.write() as conn:
            rows = q.reset(conn, clauses, status, now_ms())
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
        tid = q.task_id(task)
        with self.db.write() as conn:
            stmt = update(TASKS).where(T.id == tid, T.pool == self.pool).values(priority=priority)
            if conn.execute(stmt).rowcount == 0:
                raise NotFoundError(f"no task {tid} in task pool {self.pool!r}")

    def task_stat(self, query: Mapping[str, Any] | None = None) -> dict[str, int]:
        """``{status: count}`` of the matching tasks (statuses with none are left out)."""
        return self._counts(query)[0]

    def _counts(self, query: Mapping[str, Any] | None) -> tuple[dict[str, int], int]:
        with self.db.read() as conn:
            return q.counts(conn, q.where(self.pool, query), now_ms())

    def wait(
        self,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        poll: float = 1.0,
    ) -> dict[str, int]:
        """Block until no matching task is waiting, running or part_done, with a progress bar
        on stderr; returns the final ``task_stat``. Raises WaitTimeout after ``timeout``
        seconds (default: two leases) without progress: no task settled and no worker held a
        live lease (Qlib polled forever when no worker existed)."""
        limit = 2 * self.lease_seconds if timeout is None else _positive(timeout, "timeout")
        total = sum(self._counts(query)[0].values())
        last_left, last_progress = -1, time.monotonic()
        label = f"task pool {self.pool}"
        with click.progressbar(length=max(total, 1), label=label, file=sys.stderr) as bar:
            while True:
                self.reclaim()
                counts, live = self._counts(query)
                left = sum(
                    counts.get(s, 0) for s in (STATUS_WAITING, STATUS_RUNNING, STATUS_PART_DONE)
                )
                bar.update(max(0, min(total, total - left) - bar.pos))
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
        with self.db.read() as conn:
            return list(conn.execute(select(T.pool).distinct().order_by(T.pool)).scalars())


class _Keeper(threading.Thread):
    """While a task runs: renews its lease every third of it, and records the run that ``R``
    starts for it (so a dead worker's run can be set back to SCHEDULED)."""

    def __init__(self, tm: TaskManager, task: dict[str, Any], lease: float, renew: bool = True):
        super().__init__(name=f"task-lease-{task['_id']}", daemon=True)
        self.tm, self.task, self.lease, self.renew = tm, task, lease, renew
        self.seen: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        next_renew = time.monotonic() + self.lease / 3
        while not self._halt.wait(min(_WATCH, self.lease / 3)):
            try:
                run_id = _active_run_id(self.tm.manager)
                if run_id is not None and run_id != self.seen:
                    self.tm.attach_run(self.task, run_id)
                    self.seen = run_id
                if self.renew and time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + self.lease / 3
                    if not self.tm.heartbeat(self.task, self.lease):
                        log.warning("task %s: lease lost to another worker", self.task["_id"])
                        return
            except Exception as e:  # a transient database error: try again at the next tick
                log.warning("task %s: lease keeper: %s", self.task["_id"], e)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()


def _active_run_id(manager: ExpManager) -> str | None:
    """The run ``R`` is filling in this process, if it is in ``manager``'s store."""
    from tracker import R

    exp = R.active_experiment
    rec = None if exp is None else exp.active_recorder
    if rec is None or rec.id is None or rec.manager.uri != manager.uri:
        return None
    return rec.id


def run_task(
    task_func: Callable[..., Any],
    task_pool: str,
    query: Mapping[str, Any] | None = None,
    force_release: bool = False,
    before_status: str = STATUS_WAITING,
    after_status: str = STATUS_DONE,
    *,
    lease_seconds: float | None = None,
    idle_exit: bool = True,
    forever: bool = False,
    poll: float = 1.0,
    exp_manager: ExpManager | None = None,
    **kwargs: Any,
) -> int:
    """The worker loop: fetch a task in ``before_status``, call ``task_func(param, **kwargs)``
    (``param`` is ``task["def"]`` for waiting tasks, ``task["res"]`` for part_done ones) and
    commit its result with ``after_status``; a failing task goes back to the queue (failed
    after max attempts) and the loop goes on. Returns how many tasks it ran.

    It stops when nothing is fetchable; with ``idle_exit=False`` it first waits while other
    workers' tasks are running (a dead worker's task comes back when its lease expires);
    with ``forever`` it never stops. ``force_release`` runs each task in a forked process so
    its memory is given back.
    """
    key = {STATUS_WAITING: "def", STATUS_PART_DONE: "res"}.get(before_status)
    if key is None:
        raise InvalidInputError(
            f"run_task: before_status {before_status!r} must be 'waiting' or 'part_done'"
        )
    tm = TaskManager(task_pool, exp_manager, lease_seconds=lease_seconds or DEFAULT_LEASE)
    query = {k: v for k, v in (query or {}).items() if k != "status"}
    ran = 0
    while True:
        current: dict[str, Any] | None = None
        try:
            with tm.safe_fetch_task(query, before_status, after_status=after_status) as task:
                current = task
                if task is not None:
                    ran += 1
                    log.info("task %s of pool %r: started", task["_id"], task_pool)
                    call = _call_in_child if force_release else _call
                    task["res"] = call(task_func, task[key], kwargs, tm, task)
        except Exception as e:
            if current is None:
                raise  # fetching failed (the database): not a task's fault
            log.warning("task %s of pool %r: %s", current["_id"], task_pool, e)
            continue
        if current is not None:
            log.info("task %s of pool %r: %s", current["_id"], task_pool, after_status)
            continue
        if forever or (not idle_exit and tm.task_stat(query).get(STATUS_RUNNING, 0)):
            time.sleep(poll)
            continue
        return ran


def _call(func: Callable[..., Any], param: Any, kwargs: dict[str, Any], *_: Any) -> Any:
    return func(param, **kwargs)


def _call_in_child(
    func: Callable[..., Any], param: Any, kwargs: dict[str, Any], tm: TaskManager, task: dict
) -> Any:
    if "fork" not in multiprocessing.get_all_start_methods():
        raise InvalidInputError("force_release=True needs os.fork; use force_release=False here")
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(sender, func, param, kwargs, tm, task))
    child.start()
    sender.close()
    try:
        kind, payload = receiver.recv()
    except EOFError:
        kind, payload = "err", "the task's process died before returning a result"
    finally:
        child.join()
        receiver.close()
    if kind == "err":
        raise TaskFuncError(f"task {task['_id']} failed in its own process:\n{payload}")
    return payload


def _child(
    sender: Any, func: Callable[..., Any], param: Any, kwargs: dict, tm: TaskManager, task: dict
) -> None:
    keeper = _Keeper(tm, task, tm.lease_seconds, renew=False)  # the parent renews the lease
    keeper.start()
    try:
        sender.send(("ok", q.to_storable(func(param, **kwargs))))
    except BaseException:
        sender.send(("err", traceback.format_exc()))
    finally:
        keeper.stop()
        sender.close()


def pool_counts(
    manager: ExpManager | None = None, pools: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """``{pool: {status: count, "stale": running tasks whose lease expired}}``."""
    if manager is None:
        from tracker import R

        manager = R.exp_manager
    db = _database(manager)
    with db.read() as conn:  # a listing creates nothing
        if not conn.dialect.has_table(conn, TASKS.name):
            return {}
        return q.pool_stats(conn, pools, now_ms())


def _database(manager: Any) -> Database:
    db = getattr(manager, "db", None)
    if not isinstance(db, Database):
        raise InvalidInputError(
            f"task pools live in a SQL store (SQLite or PostgreSQL); {manager!r} has none: "
            "open one with tracker.connect('DIR' or 'postgresql+psycopg://…')"
        )
    return db


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
