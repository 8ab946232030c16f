"""The task queue on SQLite and PostgreSQL: dedupe, statuses, every method, leases, real
worker processes (exactly once, SIGKILL mid-task), and the ``tracker tasks``/``worker`` CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pandas as pd
import pytest
from click.testing import CliRunner

import tracker
from tests.online.tasks import synthetic_task
from tracker import R, RunStatus
from tracker.cli.main import cli
from tracker.online.workflow.task import manage as tmod
from tracker.online.workflow.task.manage import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PART_DONE,
    STATUS_RUNNING,
    STATUS_WAITING,
    LeaseLost,
    TaskManager,
    WaitTimeout,
    pool_counts,
    run_task,
)

REPO = Path(__file__).resolve().parents[2]


class Store(NamedTuple):
    manager: tracker.ExpManager
    uri: str
    artifact_uri: str
    cli: list[str]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store(request, tmp_path) -> Store:
    if request.param == "postgres":
        uri, art = request.getfixturevalue("pg_uri"), str(tmp_path / "art")
        manager = tracker.connect(uri, art)
        args = ["--uri", uri, "--artifact-uri", art]
    else:
        manager = tracker.connect(tmp_path / "s")
        args = ["--uri", str(tmp_path / "s")]
    tracker.init(exp_manager=manager)
    return Store(manager, manager.uri, str(manager.artifact_uri), args)


def row(tm: TaskManager, task_id: int) -> dict:
    return tm.re_query(task_id)


# ---------------------------------------------------------------------------------- dedupe


def test_create_task_dedupes_by_canonical_hash(store, capsys):
    tm = TaskManager("dedupe", store.manager)
    a = {
        "model": {"class": "M", "kwargs": {"x": 1, "y": None}},
        "segments": {"train": ("2020-01-01", dt.date(2020, 6, 30))},
        "when": pd.Timestamp("2021-01-04"),
    }
    b = {
        "when": dt.datetime(2021, 1, 4),
        "segments": {"train": ["2020-01-01", dt.date(2020, 6, 30)]},
        "model": {"kwargs": {"y": None, "x": 1}, "class": "M"},
    }
    ids = tm.create_task([a, b, {"other": 1}])
    assert ids[0] == ids[1] != ids[2]
    assert tm.task_stat() == {STATUS_WAITING: 2}
    assert tm.re_query(ids[0])["def"] == a  # pickled: the tuple and Timestamp come back
    # Existing tasks keep their id whatever their status (Qlib): a done task is not re-run.
    task = tm.fetch_task()
    tm.commit_task_res(task, "r")
    assert tm.create_task([b]) == [ids[0]]
    assert row(tm, ids[0])["status"] == STATUS_DONE
    # dry_run inserts nothing and tells which are new (None).
    assert tm.create_task([{"new": 1}, a], dry_run=True) == [None, ids[0]]
    assert sum(tm.task_stat().values()) == 2
    capsys.readouterr()
    tm.create_task([{"new": 2}, a], print_nt=True)
    assert capsys.readouterr().out.strip() == "{'new': 2}"
    with pytest.raises(tracker.InvalidInputError, match=r"task\.obj holds a object"):
        tm.create_task([{"obj": object()}])
    int_key, str_key = tm.create_task([{1: "k"}, {"1": "k"}])
    assert int_key != str_key


# ---------------------------------------------------------------------- statuses and methods


def test_fetch_priority_commit_return_query_reset_remove(store):
    tm = TaskManager("methods", store.manager)
    first, second, third = tm.create_task([{"n": 1}, {"n": 2}, {"n": 3}])
    tm.prioritize(third, 5)
    got = tm.fetch_task()
    assert (got["_id"], got["status"], got["fetched_from"]) == (third, STATUS_RUNNING, "waiting")
    assert got["worker"] == tmod.worker_id() and got["lease_until"] > time.time() * 1000
    assert tm.fetch_task()["_id"] == first
    tm.return_task(row(tm, first))
    assert row(tm, first)["status"] == STATUS_WAITING and row(tm, first)["worker"] is None
    # Two-step tasks: the part_done result is the next step's input.
    tm.commit_task_res(got, {"step": 1}, STATUS_PART_DONE)
    part = tm.fetch_task(status=STATUS_PART_DONE)
    assert part["_id"] == third and part["res"] == {"step": 1}
    tm.commit_task_res(part, {"step": 2})
    assert row(tm, third)["res"] == {"step": 2} and row(tm, third)["status"] == STATUS_DONE
    assert tm.task_stat() == {STATUS_WAITING: 2, STATUS_DONE: 1}
    assert tm.task_stat({"status": STATUS_DONE}) == {STATUS_DONE: 1}
    # Qlib's Mongo-style queries, in the forms it uses.
    assert [t["_id"] for t in tm.query({"status": STATUS_WAITING})] == [first, second]
    assert [t["_id"] for t in tm.query({"_id": {"$in": [third, second]}})] == [second, third]
    assert [t["_id"] for t in tm.query({"_id": str(third)})] == [third]
    assert [t["_id"] for t in tm.query({"status": {"$in": ["done"]}, "_id": third})] == [third]
    raw = next(tm.query({"_id": third}, decode=False))
    assert isinstance(raw["def"], bytes) and isinstance(raw["res"], bytes)
    for bad, match in [
        ({"filter": {"n": 1}}, "keys \\['filter'\\] are not supported"),
        ({"_id": {"$gt": 1}}, "is not supported"),
        ({"status": "stuck"}, "not one of"),
        ({"_id": "abc"}, "non-negative integer"),
    ]:
        with pytest.raises(tracker.InvalidInputError, match=match):
            tm.query(bad)
    with pytest.raises(tracker.NotFoundError, match="no task 999"):
        tm.re_query(999)
    with pytest.raises(tracker.NotFoundError):
        tm.prioritize(999, 1)
    # Maintenance.
    assert tm.reset_status({"status": STATUS_DONE}, STATUS_WAITING) == 1
    assert tm.task_stat() == {STATUS_WAITING: 3}
    running = tm.fetch_task()
    assert tm.reset_waiting() == 1 and row(tm, running["_id"])["status"] == STATUS_WAITING
    other = TaskManager("other", store.manager)
    other.create_task([{"n": 1}])
    assert tm.list() == ["methods", "other"]
    assert pool_counts(store.manager) == {"methods": {"waiting": 3}, "other": {"waiting": 1}}
    assert tm.remove({"_id": first}) == 1
    assert tm.remove() == 2 and tm.task_stat() == {} and other.task_stat() == {"waiting": 1}


def test_safe_fetch_counts_failures_and_fails_after_max_attempts(store):
    tm = TaskManager("flaky", store.manager, max_attempts=2)
    (tid,) = tm.create_task([{"n": 1}])
    with pytest.raises(ValueError), tm.safe_fetch_task():
        raise ValueError("boom 1")
    assert row(tm, tid)["status"] == STATUS_WAITING and row(tm, tid)["attempts"] == 1
    assert row(tm, tid)["error"].startswith("ValueError: boom 1")
    with pytest.raises(KeyboardInterrupt), tm.safe_fetch_task():
        raise KeyboardInterrupt  # an interrupt gives the task back, uncounted
    assert row(tm, tid)["status"] == STATUS_WAITING and row(tm, tid)["attempts"] == 1
    with pytest.raises(ValueError), tm.safe_fetch_task():
        raise ValueError("boom 2")
    failed = row(tm, tid)
    assert failed["status"] == STATUS_FAILED and failed["attempts"] == 2
    assert failed["error"].startswith("ValueError: boom 2") and "Traceback" in failed["error"]
    with tm.safe_fetch_task() as nothing:
        assert nothing is None  # failed tasks are not fetched again
    assert tm.reset_status({"status": STATUS_FAILED}, STATUS_WAITING) == 1
    with tm.safe_fetch_task() as task:
        task["res"] = 7  # committed on success
    assert row(tm, tid)["res"] == 7 and row(tm, tid)["attempts"] == 0
    tm.reset_status({}, STATUS_WAITING)
    with tm.safe_fetch_task(after_status=STATUS_PART_DONE) as task:
        tm.commit_task_res(task, 8)  # committed by the block: kept as is
    assert (row(tm, tid)["res"], row(tm, tid)["status"]) == (8, STATUS_DONE)


def always_fails(task: dict) -> None:
    raise RuntimeError(f"nope {task['n']}")


def test_run_task_marks_an_always_failing_task_failed(store):
    tm = TaskManager("bad", store.manager)
    ok, bad = tm.create_task([{"n": 0}, {"n": 1}])

    def func(task: dict) -> int:
        return task["n"] if task["n"] == 0 else always_fails(task)

    assert run_task(func, "bad", exp_manager=store.manager) == 1 + 3
    assert row(tm, ok)["status"] == STATUS_DONE and row(tm, ok)["res"] == 0
    failed = row(tm, bad)
    assert failed["status"] == STATUS_FAILED and failed["attempts"] == 3
    assert failed["error"].startswith("RuntimeError: nope 1")
    with pytest.raises(tracker.InvalidInputError, match="before_status 'done'"):
        run_task(func, "bad", before_status=STATUS_DONE)


# ------------------------------------------------------------------------ leases and runs


def test_expired_lease_requeues_the_task_and_reschedules_its_run(store):
    tm = TaskManager("lease", store.manager, lease_seconds=0.3)
    (tid,) = tm.create_task([{"n": 1}])
    exp = store.manager.get_or_create_experiment("lease")
    with mock.patch.object(tmod, "worker_id", return_value="deadhost:1"):
        task = tm.fetch_task()
        run = store.manager.create_run(exp.experiment_id, "dying")
        assert tm.attach_run(task, run.run_id)
        assert tm.heartbeat(task)
    assert store.manager.get_run(run.run_id).data.tags["tracker.task_id"] == str(tid)
    with pytest.raises(LeaseLost, match="held by worker deadhost:1"):
        tm.commit_task_res(task, "stolen")
    assert not tm.heartbeat(task)  # not ours
    time.sleep(0.4)
    assert pool_counts(store.manager)["lease"] == {"running": 1, "stale": 1}
    assert tm.reclaim() == [tid]
    back = row(tm, tid)
    assert (back["status"], back["attempts"], back["worker"]) == (STATUS_WAITING, 1, None)
    assert "lease expired: worker deadhost:1" in back["error"] and back["run_id"] == run.run_id
    assert store.manager.get_run_info(run.run_id).status is RunStatus.SCHEDULED
    # The next worker's run replaces the rescheduled one.
    task = tm.fetch_task()
    new = store.manager.create_run(exp.experiment_id, "retry")
    assert tm.attach_run(task, new.run_id)
    old = store.manager.get_run(run.run_id)
    assert old.info.status is RunStatus.KILLED
    assert old.data.tags["tracker.replaced_by"] == new.run_id
    # A lease lost for the last allowed attempt fails the task and kills its run.
    tm.reset_status({}, STATUS_WAITING)
    for _ in range(3):
        task = tm.fetch_task(lease_seconds=0.05)
        tm.attach_run(task, new.run_id)
        if store.manager.get_run_info(new.run_id).status is RunStatus.SCHEDULED:
            store.manager.update_run(new.run_id, status=RunStatus.RUNNING)  # resumed
        time.sleep(0.1)
        tm.reclaim()
    assert row(tm, tid)["status"] == STATUS_FAILED
    assert store.manager.get_run_info(new.run_id).status is RunStatus.KILLED


def test_heartbeat_thread_keeps_a_long_task(store):
    tm = TaskManager("long", store.manager, lease_seconds=0.3)
    (tid,) = tm.create_task([{"n": 1}])
    seen = []

    def slow(task: dict) -> str:
        for _ in range(4):
            time.sleep(0.25)
            seen.extend(tm.reclaim())  # a peer looking for expired leases finds none
        return "ok"

    assert run_task(slow, "long", lease_seconds=0.3, exp_manager=store.manager) == 1
    assert seen == [] and row(tm, tid)["status"] == STATUS_DONE and row(tm, tid)["attempts"] == 0


def train_in_a_run(task: dict, experiment_name: str) -> tracker.Recorder:
    with R.start(experiment_name=experiment_name) as rec:
        rec.log_params(n=task["n"])
        time.sleep(0.3)  # long enough for the lease keeper to see the run start
    return rec


def resume_run(rec: tracker.Recorder, experiment_name: str) -> tracker.Recorder:
    with R.start(experiment_name=experiment_name, recorder_id=rec.id, resume=True) as again:
        again.log_metrics(score=1.0)
    return again


def test_recorder_results_and_two_phase_tasks(store):
    tm = TaskManager("recs", store.manager)
    (tid,) = tm.create_task([{"n": 4}])
    kw = {"exp_manager": store.manager, "experiment_name": "recs"}
    assert run_task(train_in_a_run, "recs", after_status=STATUS_PART_DONE, **kw) == 1
    done = row(tm, tid)
    rec = done["res"]
    assert isinstance(rec, tracker.Recorder) and rec.status == "FINISHED"
    assert done["run_id"] == rec.id and rec.list_params()["n"] == "4"
    assert rec.list_tags()["tracker.task_pool"] == "recs"
    assert run_task(resume_run, "recs", before_status=STATUS_PART_DONE, **kw) == 1
    final = row(tm, tid)
    assert final["status"] == STATUS_DONE and final["res"].id == rec.id
    assert final["res"].list_metrics() == {"score": 1.0}


def pid_of_worker(task: dict) -> int:
    return os.getpid()


def test_force_release_runs_each_task_in_its_own_process(store):
    tm = TaskManager("fork", store.manager)
    (tid,) = tm.create_task([{"n": 1}])
    assert run_task(pid_of_worker, "fork", force_release=True, exp_manager=store.manager) == 1
    assert row(tm, tid)["res"] not in (None, os.getpid())
    tm.create_task([{"n": 2}])
    assert run_task(always_fails, "fork", force_release=True, exp_manager=store.manager) == 3
    assert "RuntimeError: nope 2" in tm.query({"status": "failed"}).__next__()["error"]


def test_wait_returns_when_settled_and_times_out_without_workers(store):
    tm = TaskManager("wait", store.manager)
    assert tm.wait(timeout=0.2) == {}
    tm.create_task([{"n": i} for i in range(3)])
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match="no worker holds a task: start one with `tracker worker"):
        tm.wait(timeout=0.3, poll=0.05)
    assert time.monotonic() - start < 3
    worker = threading.Thread(
        target=run_task,
        args=(lambda t: time.sleep(0.1), "wait"),
        kwargs={"exp_manager": tm.manager},
    )
    worker.start()
    seen: list[tuple[str, int, int]] = []
    assert tm.wait(timeout=5, poll=0.05, progress=lambda *a: seen.append(a)) == {STATUS_DONE: 3}
    worker.join()
    assert seen[-1] == ("task pool wait", 3, 3)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)


# ------------------------------------------------------------------------- real processes

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import tracker
    from tracker import R
    from tracker.online.workflow.task.manage import TaskManager, run_task

    uri, art, pool, outdir, mode, lease = sys.argv[1:]
    out = Path(outdir)
    manager = tracker.connect(uri, art)
    tracker.init(exp_manager=manager)
    if mode != "sleepy":  # start together, so that they really compete
        (out / f"ready-{os.getpid()}").touch()
        while not (out / "go").exists():
            time.sleep(0.005)

    def mark(task):
        path = out / f"{task['n']}.txt"
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return len(path.read_text().splitlines())

    def quick(task):
        mark(task)
        time.sleep(0.02)
        return task["n"]

    def sleepy(task):
        attempt = mark(task)
        with R.start(experiment_name=pool) as rec:
            if attempt == 1:
                (out / "started").write_text(rec.id)
                time.sleep(120)  # killed here
        return rec

    if mode == "create":  # on a store without the queue table yet
        print(json.dumps(TaskManager(pool, manager).create_task([{"n": i} for i in range(10)])))
    else:
        func = {"quick": quick, "sleepy": sleepy}[mode]
        print(run_task(func, pool, lease_seconds=float(lease), idle_exit=False, poll=0.2))
    """
)


def start_worker(store: Store, tmp_path: Path, pool: str, mode: str, lease: float = 10):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, str(script), store.uri, store.artifact_uri, pool, str(out), mode]
    return subprocess.Popen(
        [*args, str(lease)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def start_together(store: Store, tmp_path: Path, pool: str, mode: str, n: int) -> list[str]:
    """Start ``n`` processes, release them at once, and return their stdout."""
    procs = [start_worker(store, tmp_path, pool, mode) for _ in range(n)]
    out = tmp_path / "out"
    deadline = time.monotonic() + 120  # generous: start-up is slow on a loaded 2-core machine
    while len(list(out.glob("ready-*"))) < n:
        dead = [p.communicate()[1] for p in procs if p.poll() is not None]
        assert not dead, dead
        assert time.monotonic() < deadline, "the workers did not start in 120 s"
        time.sleep(0.01)
    (out / "go").touch()
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err for _, err in results]
    return [stdout for stdout, _ in results]


@pytest.mark.slow
def test_processes_create_the_table_and_the_same_tasks_at_once(store, tmp_path):
    outputs = start_together(store, tmp_path, "race", "create", 4)
    ids = [json.loads(o) for o in outputs]
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 10
    assert TaskManager("race", store.manager).task_stat() == {STATUS_WAITING: 10}


@pytest.mark.slow
def test_worker_processes_run_every_task_exactly_once(store, tmp_path):
    tm = TaskManager("many", store.manager)
    ids = tm.create_task([{"n": i} for i in range(40)])
    outputs = start_together(store, tmp_path, "many", "quick", 4)
    assert sum(int(o) for o in outputs) == 40
    executions = {i: (tmp_path / "out" / f"{i}.txt").read_text().split() for i in range(40)}
    assert all(len(pids) == 1 for pids in executions.values()), executions
    assert len({pids[0] for pids in executions.values()}) >= 2  # they did share the pool
    assert tm.task_stat() == {STATUS_DONE: 40}
    assert sorted(t["res"] for t in tm.query({"_id": {"$in": ids}})) == list(range(40))


@pytest.mark.slow
def test_killed_worker_task_is_finished_by_another_after_the_lease(store, tmp_path):
    tm = TaskManager("kill", store.manager)
    (tid,) = tm.create_task([{"n": 0}])
    victim = start_worker(store, tmp_path, "kill", "sleepy", lease=1.0)
    started = tmp_path / "out" / "started"
    deadline = time.monotonic() + 30
    while not (started.exists() and row(tm, tid)["run_id"] == started.read_text()):
        assert time.monotonic() < deadline and victim.poll() is None, victim.stderr.read()
        time.sleep(0.05)
    first_run = started.read_text()
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert store.manager.get_run_info(first_run).status is RunStatus.RUNNING
    rescuer = start_worker(store, tmp_path, "kill", "sleepy", lease=1.0)  # waits for the lease
    out, err = rescuer.communicate(timeout=60)
    assert rescuer.returncode == 0 and out.strip() == "1", err
    done = row(tm, tid)
    assert done["status"] == STATUS_DONE and done["attempts"] == 0
    assert "lease expired" in done["error"]  # the lost attempt is on record
    second_run = done["res"]
    assert second_run.id != first_run and second_run.refresh().status == "FINISHED"
    old = store.manager.get_run(first_run)  # RUNNING -> SCHEDULED (reclaim) -> KILLED (replaced)
    assert old.info.status is RunStatus.KILLED
    assert old.data.tags["tracker.replaced_by"] == second_run.id
    assert len((tmp_path / "out" / "0.txt").read_text().split()) == 2


# ------------------------------------------------------------------------------------ CLI


def invoke(store: Store, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, [*store.cli, *args], input=input)


def test_cli_tasks_list_reset_prioritize_remove(store):
    assert json.loads(invoke(store, "tasks", "--json").output) == []  # no queue table yet
    tm = TaskManager("cli", store.manager)
    ids = tm.create_task([{"n": i} for i in range(3)])
    tm.commit_task_res(tm.fetch_task(), 1)
    TaskManager("zz", store.manager).create_task([{"n": 1}])
    result = invoke(store, "tasks")
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[0].split() == list(tmod_columns())
    assert result.output.split("\n")[1].split() == ["cli", "2", "0", "0", "1", "0", "0", "3"]
    listed = json.loads(invoke(store, "tasks", "--json").output)
    assert [p["pool"] for p in listed] == ["cli", "zz"]
    one = json.loads(invoke(store, "tasks", "cli", "--json").output)
    assert one == [{"pool": "cli", "waiting": 2, "running": 0, "part_done": 0, "done": 1,
                    "failed": 0, "stale": 0, "total": 3}]  # fmt: skip
    assert json.loads(invoke(store, "tasks", "--json", "zz").output)[0]["total"] == 1
    missing = invoke(store, "tasks", "nope")
    assert missing.exit_code == 1 and "no task pool 'nope' (pools: cli, zz)" in missing.output
    result = invoke(store, "tasks", "prioritize", "cli", str(ids[2]), "9")
    assert result.exit_code == 0, result.output
    assert tm.fetch_task()["_id"] == ids[2]
    result = invoke(store, "tasks", "reset", "cli")
    assert "reset 1 task(s) of pool 'cli' from running to waiting" in result.output
    result = invoke(store, "tasks", "reset", "cli", "--status", "done", "--to", "failed")
    assert result.exit_code == 0 and tm.task_stat() == {"waiting": 2, "failed": 1}
    assert invoke(store, "tasks", "remove", "cli", "--status", "failed", input="n\n").exit_code == 1
    result = invoke(store, "tasks", "remove", "cli", "--status", "failed", "--yes")
    assert "removed 1 task(s)" in result.output and tm.task_stat() == {"waiting": 2}
    bad = invoke(store, "tasks", "reset", "nope")
    assert bad.exit_code == 1 and "no task pool 'nope'" in bad.output
    bad = invoke(store, "tasks", "prioritize", "cli", "999", "1")
    assert bad.exit_code == 1 and "no task 999 in task pool 'cli'" in bad.output


def tmod_columns() -> tuple[str, ...]:
    from tracker.cli.tasks import COLUMNS

    return COLUMNS


def tiny_task(seed: int) -> dict:
    """A small synthetic training task."""
    return synthetic_task(
        {
            "train": ["2020-01-01", "2020-04-30"],
            "valid": ["2020-05-01", "2020-05-31"],
            "test": ["2020-06-01", None],
        },  # fmt: skip
        synthetic={"n_instruments": 8, "n_days": 160, "seed": 1},
        windows=[5],
        model_kwargs={"seed": seed},
    )


def test_cli_worker_trains_the_pool_with_task_train(store):
    tm = TaskManager("train", store.manager)
    ids = tm.create_task([tiny_task(0), tiny_task(1)])
    result = invoke(store, "worker", "--pool", "train", "--lease", "30")
    assert result.exit_code == 0, result.output
    assert "ran 2 task(s) of pool 'train'; pool: 2 done" in result.stdout
    assert f"task {ids[0]} of pool 'train': done" in result.stderr
    recs = [tm.re_query(i)["res"] for i in ids]
    assert [r.status for r in recs] == ["FINISHED"] * 2
    assert all("pred.pkl" in r.list_artifacts() for r in recs)
    assert {r.experiment_id for r in recs} == {
        store.manager.get_experiment_by_name("train").experiment_id
    }
    again = invoke(store, "worker", "--pool", "train")
    assert "ran 0 task(s)" in again.stdout
    # Delayed training: record first (part_done), train later in the same run.
    (tid,) = TaskManager("delayed", store.manager).create_task([tiny_task(2)])
    begun = invoke(store, "worker", "--pool", "delayed", "--phase", "begin")
    assert "pool: 1 part_done" in begun.stdout, begun.output
    rec = TaskManager("delayed", store.manager).re_query(tid)["res"]
    assert rec.list_artifacts() == ["task"]
    ended = invoke(
        store, "worker", "--pool", "delayed", "--phase", "end", "--experiment", "delayed"
    )
    assert "pool: 1 done" in ended.stdout, ended.output
    final = TaskManager("delayed", store.manager).re_query(tid)["res"]
    assert final.id == rec.id and "pred.pkl" in final.list_artifacts()
