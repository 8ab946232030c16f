"""Keeping a running task's lease: a thread renews it and records the run ``R`` starts for
the task, so that a dead worker's task and run can be handed back."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from tracker.manager import ExpManager

if TYPE_CHECKING:
    from tracker.online.workflow.task.manage import TaskManager

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)
_WATCH = 0.1  # seconds between looks at the worker's active run (an in-memory check)


class LeaseKeeper(threading.Thread):
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
                run_id = active_run_id(self.tm.manager)
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


def active_run_id(manager: ExpManager) -> str | None:
    """The run ``R`` is filling in this process, if it is in ``manager``'s store."""
    from tracker import R

    exp = R.active_experiment
    rec = None if exp is None else exp.active_recorder
    if rec is None or rec.id is None or rec.manager.uri != manager.uri:
        return None
    return rec.id
