"""Background batching of metrics and tags, heartbeats, and ending runs when the process ends.

Callers append validated points to a run's :class:`LogBuffer` (a list append under a lock)
and return at once. One daemon thread per process flushes every buffer every
``FLUSH_INTERVAL`` seconds (sooner once ``WAKE_AT`` points wait) as one ``log_batch`` per run,
and refreshes the heartbeat of every live run. A flush that fails keeps its points for the
next attempt and the error is raised at the caller's next flush point, never dropped.

The thread is a daemon, so it never holds up interpreter exit (Qlib's AsyncCaller deadlocked
there); the exit hook flushes in the main thread instead.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tracker.entities import Metric, RunStatus

if TYPE_CHECKING:
    from tracker.manager import ExpManager

FLUSH_INTERVAL = float(os.environ.get("TRACKER_FLUSH_INTERVAL", "0.1"))
HEARTBEAT_INTERVAL = float(os.environ.get("TRACKER_HEARTBEAT_INTERVAL", "10"))
WAKE_AT = 20_000  # queued points that wake the writer early
BLOCK_AT = 2_000_000  # queued points at which the caller flushes itself, bounding memory


class RunTerminated(BaseException):
    """Raised in the main thread on SIGTERM so ``with R.start()`` unwinds and ends as KILLED."""


class LogBuffer:
    """Points waiting to be written for one run."""

    def __init__(self, manager: ExpManager, run_id: str) -> None:
        self.manager = manager
        self.run_id = run_id
        self.metrics: list[Metric] = []
        self.tags: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.error: BaseException | None = None
        self.next_beat = time.monotonic() + HEARTBEAT_INTERVAL  # start_run wrote the first
        # Re-entrant: a signal handler may run while the main thread holds them.
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()

    def add_metrics(self, points: list[Metric]) -> None:
        with self._lock:
            self.metrics.extend(points)
            n = len(self.metrics)
        if n >= WAKE_AT:
            if n >= BLOCK_AT:
                self.flush()
            else:
                _writer.wake()

    def add_tags(self, tags: dict[str, str]) -> None:
        with self._lock:
            self.tags.update(tags)

    def add_params(self, params: dict[str, str]) -> None:
        """Only for params that cannot conflict (a new run's own); others are written at once
        so that a conflicting value raises where it was logged."""
        with self._lock:
            self.params.update(params)

    def raise_error(self) -> None:
        """Re-raise, once, an error a background flush hit."""
        error, self.error = self.error, None
        if error is not None:
            raise error

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                metrics, tags, params = self.metrics, self.tags, self.params
                self.metrics, self.tags, self.params = [], {}, {}
            if not metrics and not tags and not params:
                return
            try:
                self.manager.log_batch(self.run_id, params, metrics, tags)
            except BaseException:
                with self._lock:  # keep them, in order, for the next attempt
                    self.metrics[:0] = metrics
                    self.tags = {**tags, **self.tags}
                    self.params = {**params, **self.params}
                raise


class _Writer:
    """The process's one background thread, started on first use."""

    def __init__(self) -> None:
        self.buffers: dict[str, LogBuffer] = {}
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def register(self, buffer: LogBuffer) -> None:
        with self._lock:
            self.buffers[buffer.run_id] = buffer
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tracker-writer", daemon=True
                )
                self._thread.start()

    def unregister(self, run_id: str) -> None:
        with self._lock:
            self.buffers.pop(run_id, None)

    def wake(self) -> None:
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait(FLUSH_INTERVAL)
            self._event.clear()
            for buffer in list(self.buffers.values()):
                try:
                    buffer.flush()
                    now = time.monotonic()
                    if now >= buffer.next_beat:
                        buffer.next_beat = now + HEARTBEAT_INTERVAL
                        buffer.manager.update_run(buffer.run_id, heartbeat=int(time.time() * 1000))
                except Exception as e:
                    buffer.error = e

    def reset_after_fork(self) -> None:
        # The child has no writer thread and must not end its parent's runs.
        self.buffers = {}
        self._thread = None
        self._event = threading.Event()
        self._lock = threading.Lock()
        _live.clear()


_writer = _Writer()
os.register_at_fork(after_in_child=_writer.reset_after_fork)


def register(buffer: LogBuffer) -> None:
    _writer.register(buffer)


def unregister(run_id: str) -> None:
    _writer.unregister(run_id)


def flush_run(run_id: str) -> None:
    """Flush a run's queued points if it is live in this process (before reading it)."""
    buffer = _writer.buffers.get(run_id)
    if buffer is not None:
        buffer.raise_error()
        buffer.flush()


# ------------------------------------------------------------------------- ending live runs

#: run id -> callable ending that run with a status; filled by Recorder.start_run.
_live: dict[str, Callable[[RunStatus], None]] = {}
_hooks_installed = False


def track_live(run_id: str, end: Callable[[RunStatus], None]) -> None:
    _install_hooks()
    _live[run_id] = end


def untrack_live(run_id: str) -> None:
    _live.pop(run_id, None)


def end_live_runs(status: RunStatus) -> None:
    for run_id, end in list(_live.items()):
        try:
            end(status)
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


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(end_live_runs, RunStatus.FINISHED)
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        end_live_runs(status_for(exc))
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
