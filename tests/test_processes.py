"""Real processes: killed, terminated, interrupted or crashing mid-run, and racing writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracker
from tracker import RunStatus, objects

pytestmark = pytest.mark.slow

LOGGER = """
import sys, time
import tracker
from tracker import R
tracker.init(sys.argv[1])
mode = sys.argv[2]
if mode == "manual":
    R.start_exp(experiment_name="p")
    run = R.get_recorder()
else:
    ctx = R.start(experiment_name="p")
    run = ctx.__enter__()
print(run.id, flush=True)
steps = int(sys.argv[3])
for step in range(steps if steps else 10**9):
    R.log_metrics(step=step, a=step, b=step, c=step, d=step, e=step)
    if not steps:
        time.sleep(0.0002)
if mode == "raise":
    raise ValueError("crash after logging")
if mode == "with":
    ctx.__exit__(None, None, None)
"""


def spawn(store: Path, mode: str, steps: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(store), mode, str(steps)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


def steps_stored(store: Path) -> dict[int, int]:
    with sqlite3.connect(store / "tracker.db") as conn:
        return dict(conn.execute("SELECT step, count(*) FROM metrics GROUP BY step").fetchall())


def wait_for_points(store: Path, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sum(steps_stored(store).values()) < n:
        assert time.monotonic() < deadline, "child wrote nothing"
        time.sleep(0.05)


def assert_whole_steps(store: Path) -> dict[int, int]:
    """Every step has all five metrics: no batch was half-written."""
    counts = steps_stored(store)
    assert counts and set(counts.values()) == {5}
    assert sorted(counts) == list(range(len(counts)))  # and no step before the last is missing
    return counts


def test_sigkill_leaves_consistent_store_and_reap_fails_the_run(tmp_path):
    store = tmp_path / "s"
    proc, run_id = spawn(store, "with", 0)
    wait_for_points(store, 5000)
    proc.kill()
    proc.wait()
    assert_whole_steps(store)
    manager = tracker.connect(store)
    assert manager.get_run_info(run_id).status is RunStatus.RUNNING
    assert [r.run_id for r in manager.stale_runs(stale_after=3600)] == []
    reaped = manager.reap(stale_after=0)
    assert [r.run_id for r in reaped] == [run_id]
    assert manager.get_run_info(run_id).status is RunStatus.FAILED


def test_sigterm_ends_run_killed_and_keeps_every_point(tmp_path):
    store = tmp_path / "s"
    proc, run_id = spawn(store, "with", 0)
    wait_for_points(store, 2000)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert_whole_steps(store)
    info = tracker.connect(store).get_run_info(run_id)
    assert info.status is RunStatus.KILLED and info.end_time is not None


def test_ctrl_c_ends_run_killed(tmp_path):
    store = tmp_path / "s"
    proc, run_id = spawn(store, "with", 0)
    wait_for_points(store, 2000)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert_whole_steps(store)
    assert tracker.connect(store).get_run_info(run_id).status is RunStatus.KILLED


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("manual", RunStatus.FINISHED, 0),
        ("raise", RunStatus.FAILED, 1),
        ("with", RunStatus.FINISHED, 0),
    ],
    ids=["exit-without-end", "uncaught-exception", "with-block"],
)
def test_process_end_writes_every_point(tmp_path, mode, status, code):
    store = tmp_path / "s"
    proc, run_id = spawn(store, mode, 500)
    assert proc.wait(timeout=60) == code
    counts = assert_whole_steps(store)
    assert len(counts) == 500  # MLflow's async mode lost the tail here
    assert tracker.connect(store).get_run_info(run_id).status is status


WRITER = """
import sys, time
import tracker
from tracker import R
uri, worker = sys.argv[1], sys.argv[2]
runs, steps, start_at = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
time.sleep(max(0.0, start_at - time.time()))
artifacts = sys.argv[6] if len(sys.argv) > 6 else None
tracker.init(uri, artifacts)
for r in range(runs):
    with R.start(experiment_name="race", recorder_name=f"{worker}-{r}"):
        R.log_params(worker=worker)
        for step in range(steps):
            R.log_metrics(step=step, x=step, y=-step)
"""


def run_writers(uri: str, n: int, runs: int, steps: int, artifacts: str | None = None) -> None:
    start_at = time.time() + 1.0  # all processes open the store at the same moment
    extra = [artifacts] if artifacts else []
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                uri,
                str(w),
                str(runs),
                str(steps),
                str(start_at),
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n)
    ]
    errors = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in errors), errors


def check_all_written(manager: tracker.ExpManager, n: int, runs: int, steps: int) -> None:
    exp = objects.get_exp(manager, experiment_name="race", create=False)
    infos = manager.search_run_infos([exp.id])
    assert len(infos) == n * runs
    assert {i.status for i in infos} == {RunStatus.FINISHED}
    assert len(manager.list_experiment_infos()) == 1
    for info in infos:
        assert len(manager.get_metric_history(info.run_id, "x")) == steps
        assert len(manager.get_metric_history(info.run_id, "y")) == steps


def test_four_processes_create_and_fill_a_new_sqlite_store(tmp_path):
    store = tmp_path / "fresh"
    run_writers(str(store), 4, 3, 2000)
    check_all_written(tracker.connect(store), 4, 3, 2000)


@pytest.mark.postgres
def test_four_processes_create_and_fill_a_new_postgres_store(pg_uri, tmp_path):
    run_writers(pg_uri, 4, 3, 2000, str(tmp_path / "artifacts"))
    check_all_written(tracker.connect(pg_uri, str(tmp_path / "artifacts")), 4, 3, 2000)


def test_code_state_recorded_in_git_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "train.py"], cwd=repo, check=True, env=env)
    (repo / "train.py").write_text("print(2)\n")
    script = "import tracker\nwith tracker.R.start(experiment_name='g') as r: print(r.id)\n"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=True
    )
    manager = tracker.connect(repo / ".tracker")
    run_id = out.stdout.strip()
    rec = tracker.Recorder(manager, "1", info=manager.get_run_info(run_id))
    assert {"code_diff.txt", "code_status.txt", "code_cached.txt"} <= set(rec.list_artifacts())
    assert "print(2)" in rec.load_object("code_diff.txt")
    assert "train.py" in Path(rec.download_artifact("code_cached.txt")).read_text()
    tags = rec.list_tags()
    assert len(tags["tracker.git_commit"]) == 40 and tags["tracker.git_dirty"] == "true"
