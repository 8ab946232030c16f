"""The worker loop, Qlib's ``run_task``: take tasks from a pool and run them until it is
drained (``tracker worker`` runs it), each in this process or in a forked one."""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from tracker.errors import InvalidInputError, TaskFuncError
from tracker.manager import ExpManager
from tracker.online.workflow.task.document import (
    STATUS_DONE,
    STATUS_PART_DONE,
    STATUS_RUNNING,
    STATUS_WAITING,
    to_storable,
)
from tracker.online.workflow.task.lease import LeaseKeeper
from tracker.online.workflow.task.manage import DEFAULT_LEASE, TaskManager

__all__ = ["run_task"]

log = logging.getLogger(__name__)


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
    keeper = LeaseKeeper(tm, task, tm.lease_seconds, renew=False)  # the parent renews the lease
    keeper.start()
    try:
        sender.send(("ok", to_storable(func(param, **kwargs))))
    except BaseException:
        sender.send(("err", traceback.format_exc()))
    finally:
        keeper.stop()
        sender.close()
