"""Background batching of metrics and tags, and heartbeats, for the runs this process logs.

Callers append validated points to a run's :class:`LogBuffer` (a list append under a lock)
and return at once. A :class:`Writer` runs two daemon threads serving every live run:

- the flush thread writes each buffer every ``flush_interval`` seconds (sooner once
  ``WAKE_AT`` points wait) as one ``log_batch`` per run. A transient store error
  (StoreUnavailable: a busy lock, a dropped connection; nothing was written) keeps the points
  queued and is retried with backoff; only a store unavailable for ``retry_for`` seconds is
  reported, the points still queued. Any other error cannot pass by retrying: the batch is
  given up and the error raised once, at the caller's next call, saying how many points were
  not written.
- the heartbeat thread refreshes each live run's heartbeat every ``heartbeat_interval``
  seconds in transactions of its own with a short lock wait, so a long flush does not hold it
  up. When it finds its run reaped (a reaper on another host took the late heartbeat for a dead
  process), it sets the run RUNNING again, tagged ``tracker.reaped_while_alive``.

The settings are read when a Writer is made (``TRACKER_FLUSH_INTERVAL``,
``TRACKER_HEARTBEAT_INTERVAL``, ``TRACKER_RETRY_FOR`` unless given); the process's writer,
:func:`current`, is made on first use. The threads are daemons, so they never hold up
interpreter exit (Qlib's AsyncCaller deadlocked there); ending runs at exit is
:mod:`tracker.exit_hooks`' job, in the main thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tracker.entities import Metric, RunInfo, RunStatus
from tracker.errors import InvalidTransition, StoreUnavailable, TrackerError
from tracker.stale import now_ms

if TYPE_CHECKING:
    from tracker.manager import ExpManager

FLUSH_INTERVAL = 0.1  # defaults of the environment variables the module docstring names
HEARTBEAT_INTERVAL = 10.0
#: Seconds a store may stay unavailable before the caller hears of it (points stay queued).
RETRY_FOR = 300.0
WAKE_AT = 20_000  # queued points that wake the writer early
BLOCK_AT = 2_000_000  # queued points at which the caller flushes itself, bounding memory
BEAT_WAIT = 2.0  # seconds a heartbeat waits for a lock before it gives up ...
BEAT_RETRY = 0.5  # ... and tries again this much later
_BACKOFF_MAX = 5.0

E = TypeVar("E", bound=Exception)

REAPED_TAG = "tracker.reaped"
REVIVED_TAG = "tracker.reaped_while_alive"


class LogBuffer:
    """Points waiting to be written for one run, and how its last background write went."""

    def __init__(self, writer: Writer, manager: ExpManager, run_id: str) -> None:
        self.writer = writer
        self.manager = manager
        self.run_id = run_id
        self.metrics: list[Metric] = []
        self.tags: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.error: BaseException | None = None
        self.ended = False  # set under end_lock when this process ends the run: no more beats
        # start_run wrote the first beat
        self.next_beat = writer.clock() + writer.heartbeat_interval
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._backoff = writer.flush_interval
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
                self.writer.wake()

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
        """Flush in the calling thread, waiting out an unavailable store for up to
        ``retry_for`` seconds; then StoreUnavailable is raised with the points still queued."""
        retry_for, clock = self.writer.retry_for, self.writer.clock
        deadline = None
        while True:
            try:
                self.flush()
                return
            except StoreUnavailable as e:
                now = clock()
                deadline = deadline or now + retry_for
                if now >= deadline:
                    self._still_queued(e, retry_for)
                    raise
                time.sleep(1.0)

    def background_flush(self, now: float, *, last: bool = False) -> None:
        """One attempt of the writer thread, unless the backoff says to wait (``last``: the
        writer is stopping, so try whatever the backoff says). The flush lock
        is held until the error is recorded, so the run's end (which flushes, then looks for
        an error) cannot miss it."""
        if now < self._retry_at and not last:
            return
        with self._flush_lock:
            try:
                self.flush()
            except StoreUnavailable as e:
                self._failing_since = self._failing_since or now
                if now - self._failing_since >= self.writer.retry_for:
                    self.error = self._still_queued(e, now - self._failing_since)
                    self._failing_since = now  # and again after as long, if it lasts
                self._backoff = min(2 * self._backoff, _BACKOFF_MAX)
                self._retry_at = now + self._backoff
                return
            except Exception as e:
                self.error = e
            self._failing_since, self._backoff = None, self.writer.flush_interval

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
                info = self.manager.beat(self.run_id, now_ms(), BEAT_WAIT)
                if info.status is not RunStatus.RUNNING and _unreap(self.manager, self.run_id):
                    self.manager.update_run(
                        self.run_id,
                        status=RunStatus.RUNNING,
                        expect=[info.status],
                        end_time=None,
                        heartbeat=now_ms(),
                        pid=os.getpid(),
                        host=socket.gethostname(),
                    )
            except Exception:
                # A busy store or a vanished run: nothing is lost by a late beat (the flush
                # reports what matters), so only try again soon.
                self.next_beat = self.writer.clock() + BEAT_RETRY
                return
        self.next_beat = self.writer.clock() + self.writer.heartbeat_interval


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


def _setting(value: float | None, variable: str, default: float) -> float:
    return float(os.environ.get(variable, default)) if value is None else value


class Writer:
    """The background threads (flush and heartbeat) serving the runs registered with it.

    ``clock`` is a monotonic clock in seconds (heartbeat schedule, backoff, retry deadline).
    The threads start on the first :meth:`add_run` or an explicit :meth:`start`;
    :meth:`stop` ends them after one last flush.
    """

    def __init__(
        self,
        *,
        flush_interval: float | None = None,
        heartbeat_interval: float | None = None,
        retry_for: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flush_interval = _setting(flush_interval, "TRACKER_FLUSH_INTERVAL", FLUSH_INTERVAL)
        self.heartbeat_interval = _setting(
            heartbeat_interval, "TRACKER_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL
        )
        self.retry_for = _setting(retry_for, "TRACKER_RETRY_FOR", RETRY_FOR)
        self.clock = clock
        self.buffers: dict[str, LogBuffer] = {}  # flushed in the background
        self.live: dict[str, LogBuffer] = {}  # beating
        self._flush_event = threading.Event()
        self._beat_event = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        _writers.add(self)

    def add_run(self, manager: ExpManager, run_id: str) -> LogBuffer:
        """A buffer for a run just started (or resumed), flushed and beating from now on."""
        buffer = LogBuffer(self, manager, run_id)
        with self._lock:
            self.buffers[run_id] = buffer
            self.live[run_id] = buffer
        self.start()
        self._beat_event.set()
        return buffer

    def start(self) -> None:
        """Start the threads unless they run."""
        with self._lock:
            if self._threads:
                return
            # Each start's threads watch their own event: a start() right after a stop()
            # cannot revive threads that are still winding down.
            self._stopping = threading.Event()
            self._threads = [
                threading.Thread(target=loop, args=(self._stopping,), name=name, daemon=True)
                for loop, name in (
                    (self._flush_loop, "tracker-writer"),
                    (self._beat_loop, "tracker-heartbeat"),
                )
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the threads, then flush every buffer once in the calling thread (an error is
        kept for the run's next call, as a background flush's is). Runs stay registered: a
        later :meth:`add_run` or :meth:`start` starts the threads again."""
        with self._lock:
            threads, self._threads = self._threads, []
            self._stopping.set()
        self._flush_event.set()
        self._beat_event.set()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        now = self.clock()
        for buffer in list(self.buffers.values()):
            buffer.background_flush(now, last=True)

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

    def _flush_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._flush_event.wait(self.flush_interval)
            self._flush_event.clear()
            if stopping.is_set():
                return  # stop() flushes in its own thread
            now = self.clock()
            for buffer in list(self.buffers.values()):
                buffer.background_flush(now)

    def _beat_loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._beat_event.clear()  # before looking, so a run registered meanwhile wakes us
            for buffer in list(self.live.values()):
                if stopping.is_set():
                    return
                if buffer.next_beat <= self.clock():
                    buffer.beat()
            upcoming = [b.next_beat for b in list(self.live.values())]
            wait = min(upcoming, default=self.clock() + self.heartbeat_interval)
            self._beat_event.wait(max(0.0, wait - self.clock()))


_current: Writer | None = None
_current_lock = threading.Lock()
_writers: weakref.WeakSet[Writer] = weakref.WeakSet()  # every one made here, for flush_run


def current() -> Writer:
    """The process's writer, made (reading the environment) on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Writer()
        return _current


def install(writer: Writer | None) -> Writer | None:
    """Make ``writer`` the process's writer for runs started from now on (None: a new one,
    from the environment, on next use); returns the previous one. Runs already started keep
    theirs."""
    global _current
    with _current_lock:
        previous, _current = _current, writer
    return previous


def _reset_after_fork() -> None:
    # The child has no background threads: it makes its own writer on first use.
    global _current, _current_lock, _writers
    _current, _current_lock, _writers = None, threading.Lock(), weakref.WeakSet()


os.register_at_fork(after_in_child=_reset_after_fork)


def flush_run(run_id: str) -> None:
    """Flush a run's queued points if it is live in this process (before reading it)."""
    for writer in list(_writers):
        buffer = writer.buffers.get(run_id)
        if buffer is not None:
            buffer.raise_error()
            buffer.flush_waiting()


def end(buffer: LogBuffer, status: RunStatus) -> RunInfo:
    """Write what the run has queued, then end it with ``status``. A queued write that fails
    ends it FAILED and is raised (that error wins over any complaint about ending it)."""
    manager, run_id, writer = buffer.manager, buffer.run_id, buffer.writer
    writer.unregister(run_id)
    try:
        try:
            buffer.flush_waiting()  # first, so that what can be written is
            buffer.raise_error()
        except Exception:
            try:
                manager.update_run(run_id, status=RunStatus.FAILED, end_time=now_ms())
            except TrackerError:
                pass
            raise
        with buffer.end_lock:
            buffer.ended = True
            try:
                return manager.update_run(
                    run_id, status=status, expect=[RunStatus.RUNNING], end_time=now_ms()
                )
            except InvalidTransition:  # a reaper, or another process resuming it, ended it
                _unreap(manager, run_id)
                return manager.update_run(run_id, status=status, end_time=now_ms())
    finally:
        writer.forget(run_id)
