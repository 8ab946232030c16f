"""The run lifecycle under contention and faults, on real stores and with real processes:
``reap`` never kills a live run, a transient store error is waited out, a permanent one is raised
once with what it cost, a repeated signal does not cut the exit flush short, and ended runs keep
accepting data (as in Qlib/MLflow) when two processes share one."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, make_url

import tracker
from tracker import InvalidStateError, Metric, Recorder, RunStatus, objects
from tracker.backends.sql import db as dbmod
from tracker.backends.sql.store import SQLExpManager
from tracker.cli.main import cli
from tracker.manager import now_ms

REPO = Path(__file__).resolve().parent.parent
TRACKER = [sys.executable, "-c", "from tracker.cli.main import main; main()"]  # the real command


def started(manager: tracker.ExpManager, name: str = "r") -> Recorder:
    exp = objects.get_exp(manager, experiment_name="e")
    return Recorder(manager, exp.id, name).start_run()


def wait_until(check, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class Progress:
    """Per-process counters in a shared file: a child stores how many calls returned (were
    acknowledged) after each call, so the parent knows even if the child dies mid-way."""

    def __init__(self, path: Path, slots: int) -> None:
        path.write_bytes(struct.pack(f"{slots}q", *([-1] * slots)))
        self.path = path

    def read(self) -> list[int]:
        data = self.path.read_bytes()
        return list(struct.unpack(f"{len(data) // 8}q", data))


# A child that logs ``keys`` metrics per step flat out into one run and stores the last
# acknowledged step in its progress slot. argv: uri progress slot seconds experiment name keys
LOGGER = """
import mmap, struct, sys, time
import tracker
from tracker import R
uri, progress, slot, seconds, exp, name, nkeys = sys.argv[1:8]
slot, seconds, nkeys = int(slot), float(seconds), int(nkeys)
tracker.init(uri)
with open(progress, "r+b") as f:
    mm = mmap.mmap(f.fileno(), 0)
keys = {f"k{i}": 0.5 for i in range(nkeys)}
with R.start(experiment_name=exp, recorder_name=name) as rec:
    print(rec.id, flush=True)
    end = time.monotonic() + seconds if seconds > 0 else float("inf")
    step = 0
    while time.monotonic() < end:
        R.log_metrics(step=step, **keys)
        mm[slot * 8 : slot * 8 + 8] = struct.pack("q", step)
        step += 1
"""


def spawn_logger(
    uri: str, progress: Path, slot: int, seconds: float, name: str, keys: int = 5, **env: str
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOGGER, uri, str(progress), str(slot), str(seconds), "lc", name]
        + [str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


def stored_steps(db_path: Path, run_id: str) -> dict[int, int]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT m.step, count(*) FROM metrics m JOIN runs r ON r.pk = m.run_pk "
            "WHERE r.id = ? GROUP BY m.step",
            (run_id,),
        ).fetchall()
    return dict(rows)


def assert_every_acknowledged_step(db_path: Path, run_id: str, acked: int, keys: int) -> None:
    """Steps 0..acked (at least) are stored, each whole, none twice, none missing."""
    counts = stored_steps(db_path, run_id)
    assert len(counts) >= acked + 1, f"{acked + 1 - len(counts)} acknowledged steps lost"
    assert sorted(counts) == list(range(len(counts)))
    assert set(counts.values()) == {keys}


# ------------------------------------------------------------------------------------ reap


def test_reap_skips_live_processes_on_this_host(tmp_path):
    manager = tracker.connect(tmp_path / "s")
    exp = objects.get_exp(manager, experiment_name="e").id
    host = socket.gethostname()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        beat = now_ms()
        alive = manager.create_run(exp, "alive", pid=sleeper.pid, host=host).run_id
        dead = manager.create_run(exp, "dead", pid=dead_pid(), host=host).run_id
        # The pid now names a process that started after the run's last heartbeat: reused.
        reused = manager.create_run(exp, "reused", pid=sleeper.pid, host=host).run_id
        elsewhere = manager.create_run(exp, "elsewhere", pid=sleeper.pid, host="other").run_id
        for run_id in (alive, dead, elsewhere):
            manager.update_run(run_id, heartbeat=beat)
        manager.update_run(reused, heartbeat=beat - 60_000)
        time.sleep(0.01)
        assert {r.run_id for r in manager.stale_runs(0)} == {alive, dead, reused, elsewhere}
        reaped = {r.run_id for r in manager.reap(stale_after=0)}
        assert reaped == {dead, reused, elsewhere}
        assert manager.get_run_info(alive).status is RunStatus.RUNNING
        assert manager.get_run(alive).data.tags == {}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cli_reap_says_which_late_runs_it_kept_alive(tmp_path):
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    time.sleep(0.01)  # its heartbeat is late for a zero threshold, and its process alive
    out = CliRunner().invoke(cli, ["--uri", str(tmp_path / "s"), "reap", "--stale-after", "0"])
    assert out.exit_code == 0, out.output
    assert "Marked 0 stale run(s) FAILED" in out.stdout
    assert f"kept {rec.id[:12]}" in out.stderr and f"pid {os.getpid()}" in out.stderr
    assert manager.get_run_info(rec.id).status is RunStatus.RUNNING


def test_live_writer_revives_a_run_reaped_from_another_host(tmp_path, use_writer):
    use_writer(heartbeat_interval=0.1)
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    # A reaper on another machine cannot see the process, and its heartbeat looks late.
    manager.update_run(rec.id, host="elsewhere", heartbeat=now_ms() - 600_000)
    reaper = SQLExpManager(f"sqlite:///{tmp_path / 's' / 'tracker.db'}")
    assert [r.run_id for r in reaper.reap(stale_after=60)] == [rec.id]
    for step in range(100):
        rec.log_metrics(step=step, m=step)
    wait_until(lambda: manager.get_run_info(rec.id).status is RunStatus.RUNNING, what="revival")
    info = manager.get_run_info(rec.id)
    assert info.end_time is None and info.host == socket.gethostname()
    tags = manager.get_run(rec.id).data.tags
    assert "tracker.reaped" not in tags and "tracker.reaped_while_alive" in tags
    rec.end_run()
    assert manager.get_run_info(rec.id).status is RunStatus.FINISHED
    assert len(manager.get_metric_history(rec.id, "m")) == 100
    reaper.close()


def test_sqlite_flush_refreshes_the_heartbeat(tmp_path):
    """SQLite has one write lock: a flush that holds it counts as a beat."""
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    manager.update_run(rec.id, heartbeat=1)
    rec.log_metrics(m=1.0)
    rec.flush()
    assert manager.get_run_info(rec.id).heartbeat > now_ms() - 10_000


@pytest.mark.slow
def test_reap_in_a_loop_never_kills_live_writers(tmp_path):
    """4 processes logging flat out into one SQLite file while `reap` with a zero threshold
    runs in a loop beside them (every live run looks stale to it)."""
    store = tmp_path / "s"
    tracker.connect(store)  # create the store before the writers race to
    progress = Progress(tmp_path / "progress", 4)
    procs = [spawn_logger(str(store), progress.path, i, 4.0, f"w{i}") for i in range(4)]
    reaper = SQLExpManager(f"sqlite:///{store / 'tracker.db'}")
    reaped: list[str] = []
    cli = subprocess.Popen(
        [*TRACKER, "--uri", str(store), "reap", "--stale-after", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    while any(p.poll() is None for p, _ in procs):
        reaped += [r.run_id for r in reaper.reap(stale_after=0)]
        time.sleep(0.05)
    assert "Marked 0 stale run(s)" in cli.communicate(timeout=60)[0]
    reaper.close()
    assert reaped == []
    acked = progress.read()
    for i, (proc, run_id) in enumerate(procs):
        assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
        assert_every_acknowledged_step(store / "tracker.db", run_id, acked[i], 5)
        assert tracker.connect(store).get_run_info(run_id).status is RunStatus.FINISHED


# ----------------------------------------------------------------------- permanent errors


def count_transactions(manager: SQLExpManager) -> list[int]:
    begun = [0]

    @event.listens_for(manager.db.engine, "begin")
    def _count(conn) -> None:
        begun[0] += 1

    return begun


def test_permanent_write_error_is_raised_once_with_its_cost_and_not_retried(tmp_path):
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    rec.flush()
    other = SQLExpManager(f"sqlite:///{tmp_path / 's' / 'tracker.db'}")  # another process
    other.delete_run(rec.id)
    begun = count_transactions(manager)
    for step in range(100):
        rec.log_metrics(step=step, m=step, n=step)
    time.sleep(0.5)  # the writer tries once and gives the batch up
    after_first = begun[0]
    time.sleep(0.5)
    assert begun[0] == after_first <= 2, "the writer keeps retrying a batch that cannot succeed"
    lost = r"deleted; restore it before writing; 200 queued metric points of run \w+ were not"
    with pytest.raises(InvalidStateError, match=lost):
        rec.log_metrics(m=1.0)
    rec.log_metrics(m=2.0)  # raised once: the next call is queued (and fails on its own)
    with pytest.raises(
        InvalidStateError, match=r"1 queued metric point of run \w+ was not written"
    ):
        rec.flush()
    rec.flush()
    other.restore_run(rec.id)
    rec.log_metrics(step=7, m=7.0)
    rec.end_run()
    assert [m.step for m in manager.get_metric_history(rec.id, "m")] == [7]
    other.close()


# ----------------------------------------------------------------------- transient errors


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.mark.slow
def test_sqlite_lock_held_longer_than_the_busy_timeout_is_waited_out(tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.2)
    manager = tracker.connect(tmp_path / "s")
    rec = started(manager)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "s" / "tracker.db"), "2.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    step = 0
    rec.log_params(during="lock")  # a synchronous write waits the lock out too
    while holder.poll() is None or step < 3000:
        rec.log_metrics(step=step, x=step)
        step += 1
        time.sleep(0.0005)
    rec.end_run()
    assert manager.get_run_info(rec.id).status is RunStatus.FINISHED
    assert [m.step for m in manager.get_metric_history(rec.id, "x")] == list(range(step))
    assert manager.get_run(rec.id).data.params["during"] == "lock"


@pytest.fixture
def pg_victim(pg_uri) -> Iterator[tuple[str, object]]:
    """A PostgreSQL URI whose connections can be found (application_name) and an admin engine
    to terminate them with."""
    name = f"victim_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(os.environ["TRACKER_TEST_POSTGRES_URI"])
    yield f"{pg_uri}&application_name={name}", (admin, name)
    admin.dispose()


def terminate_busy(admin, name: str) -> int:
    """Terminate the victim's backends that are inside a transaction right now."""
    with admin.begin() as conn:
        return len(
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %(n)s AND state IN ('active', 'idle in transaction')",
                {"n": name},
            ).all()
        )


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_backend_terminated_mid_flush_loses_nothing(pg_victim, tmp_path):
    uri, (admin, name) = pg_victim
    manager = tracker.connect(uri, str(tmp_path / "art"))
    rec = started(manager)
    killed, stop = [0], threading.Event()

    def killer() -> None:
        while not stop.is_set() and killed[0] < 5:
            killed[0] += terminate_busy(admin, name)
            time.sleep(0.002)

    thread = threading.Thread(target=killer)
    thread.start()
    keys = {f"k{i}": 1.0 for i in range(20)}
    step = 0
    deadline = time.monotonic() + 20
    while killed[0] < 5 and time.monotonic() < deadline:
        rec.log_metrics(step=step, **keys)
        step += 1
    stop.set()
    thread.join()
    assert killed[0] >= 3, "the test did not manage to cut a flush"
    rec.end_run()
    assert manager.get_run_info(rec.id).status is RunStatus.FINISHED
    history = manager.get_metric_history(rec.id, "k7")
    assert [m.step for m in history] == list(range(step))  # none lost, none twice


class CommitCutter:
    """A TCP proxy in front of PostgreSQL that, once armed, lets the next COMMIT through and
    then drops the connection before the server's answer reaches the client: the transaction
    commits, but the client only sees a lost connection (as in a failover at the wrong
    moment)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.upstream)
            cut = threading.Event()
            threading.Thread(target=self._up, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        while data := client.recv(65536):
            if self.armed.is_set() and b"COMMIT" in data:
                self.armed.clear()
                self.cuts += 1
                cut.set()  # the answer is dropped from now on
                server.sendall(data)
                time.sleep(0.3)  # the server commits meanwhile
                for sock in (client, server):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            server.sendall(data)

    def _down(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while (data := server.recv(65536)) and not cut.is_set():
                client.sendall(data)
        except OSError:
            pass


@pytest.mark.postgres
def test_connection_lost_during_commit_writes_the_batch_once(pg_uri, tmp_path):
    url = make_url(pg_uri)
    proxy = CommitCutter(url.host or "127.0.0.1", url.port or 5432)
    query = {**url.query, "sslmode": "disable"}  # the proxy must see the COMMIT
    uri = url.set(host="127.0.0.1", port=proxy.port, query=query)
    manager = SQLExpManager(uri.render_as_string(hide_password=False), artifact_uri=str(tmp_path))
    rec = started(manager)
    rec.flush()  # nothing of the recorder's own goes through the armed proxy
    run_id = rec.id
    proxy.armed.set()
    manager.log_batch(run_id, metrics=[Metric("m", float(i), i, i) for i in range(100)])
    assert proxy.cuts == 1
    assert [m.step for m in manager.get_metric_history(run_id, "m")] == list(range(100))
    manager.close()


@pytest.mark.postgres
def test_heartbeat_goes_on_while_a_flush_waits_for_a_lock(pg_uri, tmp_path, use_writer):
    use_writer(heartbeat_interval=0.1)
    manager = tracker.connect(pg_uri, str(tmp_path / "art"))
    rec = started(manager)
    admin = create_engine(pg_uri)
    with admin.connect() as conn, conn.begin():
        conn.exec_driver_sql("LOCK TABLE metrics IN EXCLUSIVE MODE")  # flushes wait on it
        rec.log_metrics(m=1.0)
        time.sleep(0.3)  # the flush is now blocked
        first = manager.get_run_info(rec.id).heartbeat
        time.sleep(1.0)
        last = manager.get_run_info(rec.id).heartbeat
    admin.dispose()
    assert last - first >= 500, "the heartbeat waited for the blocked flush"
    rec.end_run()
    assert len(manager.get_metric_history(rec.id, "m")) == 1


# ------------------------------------------------------------------- signals during exit


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.005, 0.03, 0.08, 0.15])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_second_signal_during_exit_flush_loses_nothing(tmp_path, signum, gap):
    store = tmp_path / "s"
    tracker.connect(store)
    progress = Progress(tmp_path / "progress", 1)
    proc, run_id = spawn_logger(str(store), progress.path, 0, 0, "sig", keys=20)
    wait_until(lambda: progress.read()[0] > 5000, what="the child to log")
    proc.send_signal(signum)
    time.sleep(gap)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    info = tracker.connect(store).get_run_info(run_id)
    assert info.status in (RunStatus.KILLED, RunStatus.FINISHED), info.status
    assert_every_acknowledged_step(store / "tracker.db", run_id, progress.read()[0], 20)


# ----------------------------------------------------------------------------- ended runs


# Resumes a run, logs, then follows orders from stdin: "log" (more points), "end", "raise".
RESUMER = """
import sys
import tracker
from tracker import R
uri, run_id, key = sys.argv[1:4]
tracker.init(uri)
step = 0
def log(n):
    global step
    for _ in range(n):
        R.log_metrics(step=step, **{key: step})
        step += 1
with R.start(experiment_name="e", recorder_id=run_id, resume=True):
    log(1000)
    R.get_recorder().flush()
    print("logged", flush=True)
    for order in sys.stdin:
        order = order.strip()
        if order == "log":
            log(1000)
            R.get_recorder().flush()
            print("logged", flush=True)
        elif order == "raise":
            raise RuntimeError("the second process fails")
        else:
            break
"""


@pytest.mark.slow
@pytest.mark.parametrize(("last", "status"), [("end", "FINISHED"), ("raise", "FAILED")])
def test_two_processes_resuming_one_run_keep_every_point(tmp_path, last, status):
    store = tmp_path / "s"
    manager = tracker.connect(store)
    first = started(manager)
    first.end_run()

    def resume(key: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", RESUMER, str(store), first.id, key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "logged", proc.stderr.read() if proc.stderr else ""
        return proc

    a, b = resume("a"), resume("b")
    a.communicate("end\n", timeout=60)
    assert a.returncode == 0
    assert manager.get_run_info(first.id).status is RunStatus.FINISHED  # a ended it
    assert b.stdin is not None and b.stdout is not None
    b.stdin.write("log\n")
    b.stdin.flush()
    assert b.stdout.readline().strip() == "logged", b.stderr.read() if b.stderr else ""
    _, err = b.communicate(f"{last}\n", timeout=60)
    assert b.returncode == (0 if last == "end" else 1), err
    info = manager.get_run_info(first.id)
    assert info.status.value == status  # the last process to end sets the status
    assert len(manager.get_metric_history(first.id, "a")) == 1000
    assert [m.step for m in manager.get_metric_history(first.id, "b")] == list(range(2000))


# --------------------------------------------------------------------------------- stress


@pytest.mark.slow
def test_stress_integrity_small(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "stress_integrity.py")]
        + ["--uri", f"sqlite:///{tmp_path / 'stress.db'}", "--writers", "4", "--seconds", "4"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "acknowledged points lost: 0" in out.stdout
    assert "live runs reaped: 0" in out.stdout
    assert "integrity_check: ok" in out.stdout
