"""The background writer as an object: settings read when it is made, threads it starts and
stops, and a clock it is given; on a real SQLite store."""

from __future__ import annotations

import time

import tracker
from tracker import Recorder, objects, writer


def started(manager: tracker.ExpManager, name: str = "r") -> Recorder:
    exp = objects.get_exp(manager, experiment_name="e")
    return Recorder(manager, exp.id, name).start_run()


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_settings_are_read_when_a_writer_is_made_not_at_import(monkeypatch):
    previous = writer.install(None)
    try:
        monkeypatch.setenv("TRACKER_FLUSH_INTERVAL", "0.5")
        monkeypatch.setenv("TRACKER_HEARTBEAT_INTERVAL", "3")
        monkeypatch.setenv("TRACKER_RETRY_FOR", "7")
        made = writer.current()
        assert (made.flush_interval, made.heartbeat_interval, made.retry_for) == (0.5, 3, 7)
        assert writer.current() is made
        assert writer.Writer(heartbeat_interval=0.2, retry_for=1).heartbeat_interval == 0.2
        monkeypatch.delenv("TRACKER_HEARTBEAT_INTERVAL")
        assert writer.Writer().heartbeat_interval == writer.HEARTBEAT_INTERVAL
    finally:
        writer.install(previous)


def test_stop_ends_the_threads_after_writing_what_is_queued_and_start_resumes(tmp_path, use_writer):
    slow = use_writer(flush_interval=3600)  # nothing is flushed in the background
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    threads = list(slow._threads)
    assert [t.name for t in threads] == ["tracker-writer", "tracker-heartbeat"]
    rec.log_metrics(step=1, m=1.0)
    slow.stop()
    assert not any(t.is_alive() for t in threads)
    assert [m.step for m in manager._get_metric_history(rec.id, "m")] == [1]
    slow.flush_interval = 0.02
    slow.start()
    rec.log_metrics(step=2, m=2.0)
    wait_until(lambda: len(manager._get_metric_history(rec.id, "m")) == 2)
    rec.end_run()
    assert manager.get_run_info(rec.id).status is tracker.RunStatus.FINISHED


def test_the_heartbeat_follows_the_clock_it_is_given(tmp_path, use_writer):
    now = [1000.0]
    use_writer(heartbeat_interval=60, clock=lambda: now[0])
    manager = tracker.connect(tmp_path / "s")
    first = started(manager, "first")
    manager.update_run(first.id, heartbeat=1)
    now[0] += 61  # a minute on the writer's clock, none on the wall
    second = started(manager, "second")  # a new run wakes the heartbeat thread
    wait_until(lambda: manager.get_run_info(first.id).heartbeat > 1)
    second.end_run()
    first.end_run()
