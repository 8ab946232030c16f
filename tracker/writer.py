"""Background batching of metrics and tags, heartbeats, and ending runs when the process ends.

Callers append validated points to a run's :class:`LogBuffer` (a list append under a lock)
and return at once. Two daemon threads per process serve every live run:

- the writer flushes each buffer every ``FLUSH_INTERVAL`` seconds (sooner once ``WAKE_AT``
  points wait) as one ``log_batch`` per run. A transient store error (StoreUnavailable: a busy
  lock, a dropped connection; nothing was written) keeps the points queued and is retried with
  backoff; only a store unavailable for ``RETRY_FOR`` seconds is reported, the points still
  queued. Any other error cannot pass by retrying: the batch is given up and the error raised
  once, at the caller's next call, saying how many points were not written.
- the heartbeat refreshes each live run's heartbeat every ``HEARTBEAT_INTERVAL`` seconds in
  transactions of its own with a short lock wait, so a long flush does not hold it up. When it
  finds its run reaped (a reaper on another host took the late heartbeat for a dead process),
  it sets the run RUNNING again, tagged ``tracker.reaped_while_alive``.

The threads are daemons, so they never hold up interpreter exit (Qlib's AsyncCaller deadlocked
there); the exit hook flushes in the main thread instead. Ending a run holds SIGINT and SIGTERM
until the run is ended, so a second Ctrl-C cannot cut its last flush short.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from tracker.entities import Metric, RunInfo, RunStatus
from tracker.errors import InvalidTransition, StoreUnavailable, TrackerError

if TYPE_CHECKING:
    from tracker.manager import ExpManager

FLUSH_INTERVAL = float(os.environ.get("TRACKER_FLUSH_INTERVAL", "0.1"))
HEARTBEAT_INTERVAL = float(os.environ.get("TRACKER_HEARTBEAT_INTERVAL", "10"))
#: Seconds a store may stay unavailable before the caller hears of it (points stay queued).
RETRY_FOR = float(os.environ.get("TRACKER_RETRY_FOR", "300"))
WAKE_AT = 20_000  # queued points that wake the writer early
BLOCK_AT = 2_000_000  # queued points at which the caller flushes itself, bounding memory
BEAT_WAIT = 2.0  # seconds a heartbeat waits for a lock before it gives up ...
BEAT_RETRY = 0.5  # ... and tries again this much later
_BACKOFF_MAX = 5.0

E = TypeVar("E", bound=Exception)

REAPED_TAG = "tracker.reaped"
REVIVED_TAG = "tracker.reaped_while_alive"


class RunTerminated(BaseException):
    """Raised in the main thread on SIGTERM so ``with R.start()`` unwinds and ends as KILLED."""


class LogBuffer:
    """Points waiting to be written for one run, and how its last background write went."""

    def __init__(self, manager: ExpManager, run_id: str) -> None:
        self.manager = manager
        self.run_id = run_id
        self.metrics: list[Metric] = []
        self.tags: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.error: BaseException | None = None
        self.ended = False  # set under end_lock when this process ends the run: no more beats
        self.next_beat = time.monotonic() + HEARTBEAT_INTERVAL  # start_run wrote the first
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._backoff = FLUSH_INTERVAL
        # Re-entrant: a signal handler may run while the main thread holds them.
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()
        self.end_lock = threading.RLock()  # a heartbeat and the run's end never interleave

    def pending(self) -> int:
        return len(self.metrics) + len(self.tags) + len(self.params)

    def add_metrics(self, points: list[Metric]) -> None:
        with self._lock:
            self.metrics.extend(points)
            n = len(self.metrics)
        if n >= WAKE_AT:
            if n >= BLOCK_AT:
                self.flush_waiting()
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
        """Write everything queued in one transaction. On StoreUnavailable (nothing was
        written) or an interrupt the points stay queued, in order; any other error gives them
        up and is raised saying how many were not written."""
        with self._flush_lock:
            with self._lock:
                metrics, tags, params = self.metrics, self.tags, self.params
                self.metrics, self.tags, self.params = [], {}, {}
            if not metrics and not tags and not params:
                return
            try:
                self.manager.log_batch(self.run_id, params, metrics, tags)
            except BaseException as e:
                if isinstance(e, Exception) and not isinstance(e, StoreUnavailable):
                    _noted(e, _not_written(len(metrics), len(tags) + len(params), self.run_id))
                    raise
                with self._lock:
                    self.metrics[:0] = metrics
                    self.tags = {**tags, **self.tags}
                    self.params = {**params, **self.params}
                raise

    def flush_waiting(self) -> None:
        """Flush in the calling thread, waiting out an unavailable store for up to RETRY_FOR
        seconds; then StoreUnavailable is raised with the points still queued."""
        deadline = None
        while True:
            try:
                self.flush()
                return
            except StoreUnavailable as e:
                now = time.monotonic()
                deadline = deadline or now + RETRY_FOR
                if now >= deadline:
                    self._still_queued(e, RETRY_FOR)
                    raise
                time.sleep(1.0)

    def background_flush(self, now: float) -> None:
        """One attempt of the writer thread, unless the backoff says to wait. The flush lock
        is held until the error is recorded, so the run's end (which flushes, then looks for
        an error) cannot miss it."""
        if now < self._retry_at:
            return
        with self._flush_lock:
            try:
                self.flush()
            except StoreUnavailable as e:
                self._failing_since = self._failing_since or now
                if now - self._failing_since >= RETRY_FOR:
                    self.error = self._still_queued(e, now - self._failing_since)
                    self._failing_since = now  # and again after as long, if it lasts
                self._backoff = min(2 * self._backoff, _BACKOFF_MAX)
                self._retry_at = now + self._backoff
                return
            except Exception as e:
                self.error = e
            self._failing_since, self._backoff = None, FLUSH_INTERVAL

    def _still_queued(self, error: StoreUnavailable, seconds: float) -> StoreUnavailable:
        what = _points(len(self.metrics), len(self.tags) + len(self.params))
        return _noted(
            error,
            f"the store has been unavailable for {seconds:.0f} s; {what} of run {self.run_id} "
            "stay queued, to be written once it answers",
        )

    def beat(self) -> None:
        """Refresh the run's heartbeat; revive the run if a reaper took it for dead."""
        with self.end_lock:
            if self.ended:
                return
            try:
                info = self.manager.beat(self.run_id, _now_ms(), BEAT_WAIT)
                if info.status is not RunStatus.RUNNING and _unreap(self.manager, self.run_id):
                    self.manager.update_run(
                        self.run_id,
                        status=RunStatus.RUNNING,
                        expect=[info.status],
                        end_time=None,
                        heartbeat=_now_ms(),
                        pid=os.getpid(),
                        host=socket.gethostname(),
                    )
            except Exception:
                # A busy store or a vanished run: nothing is lost by a late beat (the flush
                # reports what matters), so only try again soon.
                self.next_beat = time.monotonic() + BEAT_RETRY
                return
        self.next_beat = time.monotonic() + HEARTBEAT_INTERVAL


def _points(metrics: int, others: int) -> str:
    """E.g. "200 queued metric points and 1 queued param/tag"."""
    parts = [f"{metrics:,} queued metric point{'' if metrics == 1 else 's'}"] if metrics else []
    if others:
        s = "" if others == 1 else "s"
        parts.append(f"{others:,} queued param{s}/tag{s}")
    return " and ".join(parts)


def _not_written(metrics: int, others: int, run_id: str) -> str:
    verb = "was" if metrics + others == 1 else "were"
    return f"{_points(metrics, others)} of run {run_id} {verb} not written"


def _noted(error: E, note: str) -> E:
    """The same error (callers may catch its type), its message extended by ``note``."""
    first = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    error.args = (f"{first}; {note}" if first else note, *error.args[1:])
    return error


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unreap(manager: ExpManager, run_id: str) -> bool:
    """If a reaper marked this live run, say in its tags that its process was alive after all;
    return whether it had been reaped."""
    data = manager._get_runs_data([run_id]).get(run_id)  # not get_runs_data: it would flush
    if data is None or REAPED_TAG not in data.tags:
        return False
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    alive = f"process {os.getpid()} on {socket.gethostname()} was alive at {when}"
    manager.set_tags(run_id, {REVIVED_TAG: f"{data.tags[REAPED_TAG]}; {alive}"})
    manager.delete_tags(run_id, [REAPED_TAG])
    return True


class _Writer:
    """The process's two background threads (flush and heartbeat), started on first use."""

    def __init__(self) -> None:
        self.buffers: dict[str, LogBuffer] = {}  # flushed in the background
        self.live: dict[str, LogBuffer] = {}  # beating
        self._flush_event = threading.Event()
        self._beat_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def register(self, buffer: LogBuffer) -> None:
        with self._lock:
            self.buffers[buffer.run_id] = buffer
            self.live[buffer.run_id] = buffer
            if not self._threads:  # their loops never end
                self._threads = [
                    threading.Thread(target=loop, name=name, daemon=True)
                    for loop, name in (
                        (self._flush_loop, "tracker-writer"),
                        (self._beat_loop, "tracker-heartbeat"),
                    )
                ]
                for thread in self._threads:
                    thread.start()
        self._beat_event.set()

    def unregister(self, run_id: str) -> None:
        """Stop flushing the run in the background (its end flushes it); it keeps beating
        until :meth:`forget`."""
        with self._lock:
            self.buffers.pop(run_id, None)

    def forget(self, run_id: str) -> None:
        with self._lock:
            self.buffers.pop(run_id, None)
            self.live.pop(run_id, None)

    def wake(self) -> None:
        self._flush_event.set()

    def _flush_loop(self) -> None:
        while True:
            self._flush_event.wait(FLUSH_INTERVAL)
            self._flush_event.clear()
            now = time.monotonic()
            for buffer in list(self.buffers.values()):
                buffer.background_flush(now)

    def _beat_loop(self) -> None:
        while True:
            self._beat_event.clear()  # before looking, so a run registered meanwhile wakes us
            for buffer in list(self.live.values()):
                if buffer.next_beat <= time.monotonic():
                    buffer.beat()
            upcoming = [b.next_beat for b in list(self.live.values())]
            wait = min(upcoming, default=time.monotonic() + HEARTBEAT_INTERVAL)
            self._beat_event.wait(max(0.0, wait - time.monotonic()))


_writer = _Writer()


def _reset_after_fork() -> None:
    # The child has no background threads and must not end its parent's runs.
    global _writer
    _writer = _Writer()
    _live.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def register(buffer: LogBuffer) -> None:
    _writer.register(buffer)


def flush_run(run_id: str) -> None:
    """Flush a run's queued points if it is live in this process (before reading it)."""
    buffer = _writer.buffers.get(run_id)
    if buffer is not None:
        buffer.raise_error()
        buffer.flush_waiting()


def end(buffer: LogBuffer, status: RunStatus) -> RunInfo:
    """Write what the run has queued, then end it with ``status``. A queued write that fails
    ends it FAILED and is raised (that error wins over any complaint about ending it)."""
    manager, run_id = buffer.manager, buffer.run_id
    _writer.unregister(run_id)
    try:
        try:
            buffer.flush_waiting()  # first, so that what can be written is
            buffer.raise_error()
        except Exception:
            try:
                manager.update_run(run_id, status=RunStatus.FAILED, end_time=_now_ms())
            except TrackerError:
                pass
            raise
        with buffer.end_lock:
            buffer.ended = True
            try:
                return manager.update_run(
                    run_id, status=status, expect=[RunStatus.RUNNING], end_time=_now_ms()
                )
            except InvalidTransition:  # a reaper, or another process resuming it, ended it
                _unreap(manager, run_id)
                return manager.update_run(run_id, status=status, end_time=_now_ms())
    finally:
        _writer.forget(run_id)
        untrack_live(run_id)


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
        for signum in dict.fromkeys(held):
            if not (exiting and signum == signal.SIGINT):
                signal.raise_signal(signum)


# ------------------------------------------------------------------------- ending live runs

#: run id -> callable ending that run with a status; filled by Recorder.start_run.
_live: dict[str, Callable[[RunStatus], None]] = {}
_hooks_installed = False


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
