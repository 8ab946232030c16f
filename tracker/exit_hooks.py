"""Ending this process's live runs when the process ends: at exit, on an uncaught exception,
on SIGTERM; and holding SIGINT/SIGTERM while a run ends so a second signal cannot cut its last
flush short.

:class:`~tracker.recorder.Recorder` registers each run it starts with :func:`track_live` (the
hooks are installed then, not at import) and unregisters it when the run ends.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from tracker.entities import RunStatus


class RunTerminated(BaseException):
    """Raised in the main thread on SIGTERM so ``with R.start()`` unwinds and ends as KILLED."""


#: run id -> callable ending that run with a status; filled by Recorder.start_run.
_live: dict[str, Callable[[RunStatus], None]] = {}
_hooks_installed = False


def _reset_after_fork() -> None:
    _live.clear()  # the child must not end its parent's runs


os.register_at_fork(after_in_child=_reset_after_fork)


def track_live(run_id: str, end: Callable[[RunStatus], None]) -> None:
    _install_hooks()
    _live[run_id] = end


def untrack_live(run_id: str) -> None:
    _live.pop(run_id, None)


def end_live_runs(status: RunStatus, *, exiting: bool = False) -> None:
    with signals_held(lambda: f"ending {len(_live)} run(s) first", exiting=exiting):
        for run_id, end_run in list(_live.items()):
            try:
                end_run(status)
            except Exception as e:  # keep ending the others; say why this one did not end
                print(f"tracker: could not end run {run_id}: {e}", file=sys.stderr)
            _live.pop(run_id, None)


def status_for(exc: BaseException | None) -> RunStatus:
    """How a run ends when ``exc`` escapes it."""
    if exc is None:
        return RunStatus.FINISHED
    if isinstance(exc, (KeyboardInterrupt, RunTerminated)):
        return RunStatus.KILLED
    if isinstance(exc, SystemExit):
        return RunStatus.FINISHED if exc.code in (None, 0) else RunStatus.FAILED
    return RunStatus.FAILED


@contextmanager
def signals_held(note: Callable[[], str], *, exiting: bool = False) -> Iterator[None]:
    """Hold SIGINT and SIGTERM during the block and deliver them after it: a second Ctrl-C or
    SIGTERM must not cut a run's end short (that left the run RUNNING and lost its queued
    points). ``exiting``: the process is ending anyway, so a held SIGINT is dropped. Signals
    reach only the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if not held:
            # os.write: print() is not safe in a handler that may interrupt a print().
            message = f"tracker: {note()}; the signal takes effect after that\n"
            os.write(2, message.encode())
        held.append(signum)

    # A handler installed outside Python (None) cannot be put back: leave that signal alone.
    previous = {
        s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None
    }
    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for delayed in dict.fromkeys(held):
            if not (exiting and delayed == signal.SIGINT):
                signal.raise_signal(delayed)


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(end_live_runs, RunStatus.FINISHED, exiting=True)
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        end_live_runs(status_for(exc), exiting=True)
        if isinstance(exc, RunTerminated):
            _die_of_sigterm()
        previous_hook(kind, exc, tb)

    sys.excepthook = excepthook
    # Only replace the default action: a program with its own SIGTERM handler keeps it.
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> Any:
    if not _live:
        _die_of_sigterm()
    raise RunTerminated("terminated by SIGTERM")


def _die_of_sigterm() -> None:
    """Exit as SIGTERM's default action would, so the parent sees the real cause."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
