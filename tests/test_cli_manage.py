"""The write-side commands: rm / restore / gc / reap / export / import, through click's CliRunner
against real stores."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import tracker
import tracker.migrate.write
from tracker import objects
from tracker.cli.main import cli
from tracker.entities import Lifecycle, Metric, RunStatus, ViewType
from tracker.manager import now_ms

NAN, INF = float("nan"), float("inf")
HOUR_MS = 3_600_000


@dataclass
class Store:
    path: Path
    r1: str  # A/r1: finished, params, tags, metrics with NaN/±inf, two artifacts
    r2: str  # A/r2: failed, no artifacts
    b1: str  # B/b1: finished, one artifact

    @property
    def manager(self) -> tracker.ExpManager:
        return tracker.connect(self.path)


def invoke(uri: Path | str, *args: str, input: str | None = None, **kw: Any) -> Result:
    return CliRunner().invoke(cli, ["--uri", str(uri), *args], input=input, **kw)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def failed(result: Result, code: int, *needles: str) -> Result:
    assert result.exit_code == code, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def store(tmp_path) -> Store:
    m = tracker.connect(tmp_path / "s")
    exp = objects.get_exp(m, experiment_name="A")
    rec = exp.start(recorder_name="r1")
    rec.log_params(lr=0.1, model="lgbm")
    for step, value in enumerate([1.0, NAN, INF, -INF, 0.5]):
        rec.log_metrics(step=step, loss=value, ic=step / 10)
    rec.log_metrics(step=4, loss=0.25)  # a second point at the same step
    rec.set_tags(note="first", owner="me")
    rec.save_objects(**{"pred.pkl": {"a": [1, 2, 3]}, "sub/x.json": {"k": "v"}})
    rec.end_run()
    r2 = exp.start(recorder_name="r2")
    r2.log_metrics(step=0, loss=3.0)
    r2.end_run("FAILED")
    b1 = objects.get_exp(m, experiment_name="B").start(recorder_name="b1")
    b1.save_objects(**{"model.pkl": list(range(100))})
    b1.end_run()
    return Store(tmp_path / "s", rec.id, r2.id, b1.id)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def lifecycle(store: Store, run_id: str) -> Lifecycle:
    return store.manager.get_run_info(run_id).lifecycle


# ------------------------------------------------------------------------------ rm / restore


def test_rm_and_restore_by_id_prefix_and_name(store):
    out = ok(invoke(store.path, "rm", "--yes", store.r1, store.b1[:10], "A/r2")).stdout
    assert "Deleted 3 run(s)" in out and store.r1[:12] in out and "A/r2" in out
    assert {lifecycle(store, r) for r in (store.r1, store.r2, store.b1)} == {Lifecycle.DELETED}
    assert store.manager.search_run_infos() == []

    ok(invoke(store.path, "rm", "--yes", store.r1))  # again: nothing to do, no error
    out = ok(invoke(store.path, "restore", store.r1[:8], "A/r2", "--json")).stdout
    assert {r["run_id"] for r in json.loads(out)["runs"]} == {store.r1, store.r2}
    assert lifecycle(store, store.r1) is Lifecycle.ACTIVE
    assert lifecycle(store, store.b1) is Lifecycle.DELETED
    assert "not deleted" in ok(invoke(store.path, "restore", store.r1)).stderr


def test_rm_ambiguous_prefix_and_unknown_run(store):
    m = store.manager
    exp = m.get_experiment_by_name("A").experiment_id
    for suffix in ("0", "1"):
        m.create_run(exp, "twin", RunStatus.FINISHED, run_id="abcd" + suffix * 28)
    failed(invoke(store.path, "rm", "-y", "abcd"), 1, "ambiguous", "abcd00000000", "abcd11111111")
    failed(invoke(store.path, "rm", "-y", "ffffffff"), 1, "no run matches")
    failed(invoke(store.path, "rm", "-y", "A/nope"), 1, "no run named 'nope'")
    assert lifecycle(store, "abcd" + "0" * 28) is Lifecycle.ACTIVE


def test_rm_needs_confirmation_without_a_terminal(store):
    result = failed(invoke(store.path, "rm", store.r1), 1, "pass --yes", "not a terminal")
    assert store.r1[:12] in result.stderr  # the runs were listed
    assert lifecycle(store, store.r1) is Lifecycle.ACTIVE


def test_rm_prompt_on_a_terminal(store, monkeypatch):
    monkeypatch.setattr("tracker.cli.manage._stdin_is_tty", lambda: True)
    result = failed(invoke(store.path, "rm", store.r1, input="n\n"), 1, "nothing was changed")
    assert "Delete 1 run(s)?" in result.stderr and result.stdout == ""
    assert lifecycle(store, store.r1) is Lifecycle.ACTIVE
    ok(invoke(store.path, "rm", store.r1, input="y\n"))
    assert lifecycle(store, store.r1) is Lifecycle.DELETED


def test_rm_usage_errors(store):
    assert invoke(store.path, "rm", "-y").exit_code == 2
    assert invoke(store.path, "rm", "-y", store.r1, "--experiment", "A").exit_code == 2
    assert invoke(store.path, "restore").exit_code == 2
    failed(invoke(store.path, "rm", "-y", "--experiment", "nope"), 1, "no experiment named")


def test_rm_and_restore_experiment(store):
    failed(invoke(store.path, "rm", "--experiment", "A"), 1, "pass --yes")
    result = ok(invoke(store.path, "rm", "--experiment", "A", "--yes", "--json"))
    data = json.loads(result.stdout)
    assert data["experiment"] == "A" and {r["run_id"] for r in data["runs"]} == {
        store.r1,
        store.r2,
    }
    m = store.manager
    assert m.find_experiment("A") is None
    exp_id = m.get_run_info(store.r1).experiment_id
    assert m.get_experiment(exp_id).lifecycle is Lifecycle.DELETED

    out = ok(invoke(store.path, "restore", "--experiment", "A")).stdout
    assert "Restored experiment 'A' with 2 run(s)" in out
    assert len(m.search_run_infos([m.get_experiment_by_name("A").experiment_id])) == 2
    failed(invoke(store.path, "restore", "--experiment", "A"), 1, "it is not deleted")

    ok(invoke(store.path, "rm", "-e", "A", "-y"))
    m.create_experiment("A")  # the name is taken again
    failed(invoke(store.path, "restore", "-e", "A"), 1, "an active experiment has that name")


def test_restoring_a_run_of_a_deleted_experiment_says_so(store):
    ok(invoke(store.path, "rm", "-y", store.r1))
    ok(invoke(store.path, "rm", "-y", "-e", "A"))
    result = ok(invoke(store.path, "restore", store.r1))
    assert "restore --experiment A" in result.stderr


# ---------------------------------------------------------------------------------------- gc


def artifact_dir(store: Store, run_id: str) -> Path:
    info = store.manager.get_run_info(run_id)
    return Path(store.manager.artifacts.local_dir(info.artifact_prefix))


def test_gc_dry_run_then_real(store):
    m = store.manager
    size = sum(e.size for e in m.list_artifact_entries(store.r1))
    assert size > 0 and artifact_dir(store, store.r1).is_dir()
    ok(invoke(store.path, "rm", "-y", store.r1))

    dry = json.loads(ok(invoke(store.path, "gc", "--dry-run", "--json")).stdout)
    assert dry["dry_run"] and dry["count"] == 1 and dry["bytes"] == size
    assert dry["runs"][0]["run_id"] == store.r1 and dry["runs"][0]["files"] == 2
    assert m.get_run_info(store.r1) and artifact_dir(store, store.r1).is_dir()
    out = ok(invoke(store.path, "gc", "-n")).stdout
    assert "Would remove 1 run(s)" in out and store.r1[:12] in out

    folder = artifact_dir(store, store.r1)
    out = ok(invoke(store.path, "gc", "--yes")).stdout
    assert "Removed 1 run(s)" in out
    with pytest.raises(tracker.RunNotFound):
        m.get_run_info(store.r1)
    assert not folder.exists()
    # Everything else is untouched.
    assert m.get_run_info(store.r2).lifecycle is Lifecycle.ACTIVE
    assert artifact_dir(store, store.b1).is_dir() and m.list_artifact_entries(store.b1)
    assert "Would remove 0 run(s)" in ok(invoke(store.path, "gc", "-n")).stdout


def test_gc_removes_runs_of_deleted_experiments(store):
    m = store.manager
    exp_id = m.get_run_info(store.b1).experiment_id
    ok(invoke(store.path, "rm", "-y", "-e", "B"))
    data = json.loads(ok(invoke(store.path, "gc", "--yes", "--json")).stdout)
    assert [r["run_id"] for r in data["runs"]] == [store.b1]
    assert data["runs"][0]["why"] == "experiment deleted" and data["bytes"] > 0
    assert m.search_run_infos([exp_id], view=ViewType.ALL) == []
    assert m.get_experiment(exp_id).lifecycle is Lifecycle.DELETED  # the row stays


def test_gc_older_than_and_live_runs(store):
    m = store.manager
    ok(invoke(store.path, "rm", "-y", store.r1, store.r2))
    old = now_ms() - 40 * 24 * HOUR_MS
    m.update_run(store.r2, start_time=old, end_time=old, heartbeat=old)
    data = json.loads(ok(invoke(store.path, "gc", "-y", "--older-than", "30d", "--json")).stdout)
    assert [r["run_id"] for r in data["runs"]] == [store.r2]
    assert lifecycle(store, store.r1) is Lifecycle.DELETED  # too recent: kept
    failed(invoke(store.path, "gc", "--older-than", "30x"), 2, "not a duration")

    # A deleted run that is still running (fresh heartbeat) is left for later.
    exp = m.get_experiment_by_name("A").experiment_id
    live = m.create_run(exp, "live", RunStatus.RUNNING).run_id
    m.delete_run(live)
    data = json.loads(ok(invoke(store.path, "gc", "--yes", "--json")).stdout)
    assert [r["run_id"] for r in data["runs"]] == [store.r1]
    assert data["skipped_running"] == [live] and m.get_run_info(live)


def test_gc_needs_confirmation_without_a_terminal(store):
    ok(invoke(store.path, "rm", "-y", store.r1))
    result = failed(invoke(store.path, "gc"), 1, "pass --yes", "not a terminal")
    assert store.r1[:12] in result.stderr and "Permanently remove 1 run(s)" in result.stderr
    failed(invoke(store.path, "gc", "--json"), 1, "pass --yes")
    assert lifecycle(store, store.r1) is Lifecycle.DELETED  # nothing was removed
    assert artifact_dir(store, store.r1).is_dir()
    assert "Would remove 1 run(s)" in ok(invoke(store.path, "gc", "--dry-run")).stdout
    assert "Removed 0 run(s)" in ok(invoke(store.path, "gc", "--older-than", "30d")).stdout


def test_gc_prompt_on_a_terminal(store, monkeypatch):
    monkeypatch.setattr("tracker.cli.manage._stdin_is_tty", lambda: True)
    ok(invoke(store.path, "rm", "-y", store.r1))
    result = failed(invoke(store.path, "gc", input="n\n"), 1, "nothing was changed")
    assert "Permanently remove 1 run(s)" in result.stderr and result.stdout == ""
    assert lifecycle(store, store.r1) is Lifecycle.DELETED
    assert "Removed 1 run(s)" in ok(invoke(store.path, "gc", input="y\n")).stdout
    with pytest.raises(tracker.RunNotFound):
        store.manager.get_run_info(store.r1)


# ------------------------------------------------------------------------------------ verify


def damage(store: Store) -> dict[str, str]:
    """One of each mismatch in run r1 (pred.pkl, sub/x.json) and b1 (model.pkl)."""
    r1, b1 = artifact_dir(store, store.r1), artifact_dir(store, store.b1)
    (r1 / "pred.pkl").write_bytes((r1 / "pred.pkl").read_bytes() + b"x")  # size
    doc = (r1 / "sub" / "x.json").read_bytes()
    (r1 / "sub" / "x.json").write_bytes(doc.replace(b'"v"', b'"w"'))  # same size
    (r1 / "extra.txt").write_text("left by a killed save")  # unrecorded
    (b1 / "model.pkl").unlink()  # missing
    return {"pred.pkl": "size", "sub/x.json": "checksum", "extra.txt": "unrecorded"}


def test_verify_reports_every_mismatch(store):
    assert "0 mismatch(es)" in ok(invoke(store.path, "verify")).stdout
    expected = damage(store)
    result = failed(invoke(store.path, "verify"), 1)
    assert "4 mismatch(es)" in result.stdout
    for path, problem in expected.items():
        assert re.search(rf"{store.r1[:12]}\s+{re.escape(path)}\s+{problem}", result.stdout)
    assert re.search(rf"{store.b1[:12]}\s+model.pkl\s+missing", result.stdout)

    data = json.loads(failed(invoke(store.path, "verify", store.r1, "--json"), 1).stdout)
    assert data["runs"] == 1 and data["files"] == 3
    found = {m["path"]: m for m in data["mismatches"]}
    assert {p: m["problem"] for p, m in found.items()} == expected
    pred = artifact_dir(store, store.r1) / "pred.pkl"
    assert found["pred.pkl"]["stored"]["checksum"] == sha(pred.read_bytes())
    assert found["pred.pkl"]["recorded"]["size"] == pred.stat().st_size - 1
    assert found["extra.txt"]["recorded"] is None and not found["extra.txt"]["repaired"]
    assert "0 mismatch(es)" in ok(invoke(store.path, "verify", store.r2)).stdout


def test_verify_repair(store):
    expected = damage(store)
    data = json.loads(ok(invoke(store.path, "verify", "--repair", "--json")).stdout)
    assert all(m["repaired"] for m in data["mismatches"]) and len(data["mismatches"]) == 4
    assert "0 mismatch(es)" in ok(invoke(store.path, "verify")).stdout
    m = store.manager
    r1 = artifact_dir(store, store.r1)
    entries = {e.path: e for e in m.list_artifact_entries(store.r1)}
    assert set(entries) == {"pred.pkl", "sub/x.json", "extra.txt"} == set(expected)
    for path, entry in entries.items():
        data = (r1 / path).read_bytes()
        assert (entry.size, entry.checksum) == (len(data), sha(data))
    assert m.list_artifact_entries(store.b1) == []
    rec = objects.get_exp(m, experiment_name="A").get_recorder(recorder_id=store.r1)
    assert rec.load_object("sub/x.json") == {"k": "w"}


def test_verify_does_not_repair_a_live_run(store):
    m = store.manager
    exp = m.get_experiment_by_name("A").experiment_id
    live = m.create_run(exp, "live", RunStatus.RUNNING)
    m.artifacts.put_bytes(live.artifact_prefix, "half-saved.bin", b"stored, not yet recorded")
    result = failed(invoke(store.path, "verify", "--repair", live.run_id), 1)
    assert "still running, not repaired" in result.stderr and "0 repaired" in result.stdout
    assert m.list_artifact_entries(live.run_id) == []


# -------------------------------------------------------------------------------------- reap


def test_reap(store):
    m = store.manager
    exp = m.get_experiment_by_name("A").experiment_id
    stale = m.create_run(exp, "stale", RunStatus.RUNNING, pid=123, host="h").run_id
    m.update_run(stale, heartbeat=now_ms() - HOUR_MS)
    fresh = m.create_run(exp, "fresh", RunStatus.RUNNING).run_id

    data = json.loads(ok(invoke(store.path, "reap", "--dry-run", "--json")).stdout)
    assert data["dry_run"] and [r["run_id"] for r in data["runs"]] == [stale]
    assert data["runs"][0]["pid"] == 123 and data["stale_after"] == 60.0
    assert m.get_run_info(stale).status is RunStatus.RUNNING

    out = ok(invoke(store.path, "reap")).stdout
    assert "Marked 1 stale run(s) FAILED" in out and stale[:12] in out
    assert m.get_run_info(stale).status is RunStatus.FAILED
    assert m.get_run_info(fresh).status is RunStatus.RUNNING
    assert "Would mark 0" in ok(invoke(store.path, "reap", "-n")).stdout
    # With a short enough threshold the fresh run counts as stale too.
    m.update_run(fresh, heartbeat=now_ms() - 5000)
    data = json.loads(ok(invoke(store.path, "reap", "-n", "--stale-after", "2", "--json")).stdout)
    assert [r["run_id"] for r in data["runs"]] == [fresh]
    assert invoke(store.path, "reap", "--stale-after", "-1").exit_code == 2


# ---------------------------------------------------------------------------- export / import


def snapshot(m: tracker.ExpManager, run_id: str) -> dict[str, Any]:
    """Everything a store knows of a run, comparable across stores (NaN as its repr)."""
    info = m.get_run_info(run_id)
    data = m.get_runs_data([run_id])[run_id]
    entries = m.list_artifact_entries(run_id)
    return {
        "experiment": m.get_experiment(info.experiment_id).name,
        "info": replace(info, experiment_id=""),
        "params": data.params,
        "tags": data.tags,
        "latest": {k: repr(v) for k, v in data.metrics.items()},
        "history": {
            k: [(p.step, p.timestamp, repr(p.value)) for p in m.get_metric_history(run_id, k)]
            for k in data.metrics
        },
        "artifacts": entries,
        "bytes": {e.path: m.artifacts.get_bytes(info.artifact_prefix, e.path) for e in entries},
    }


def add_odd_runs(store: Store) -> list[str]:
    """A deleted run and a still-RUNNING run with explicit timestamps."""
    m = store.manager
    exp = m.get_experiment_by_name("B").experiment_id
    running = m.create_run(exp, "running", RunStatus.RUNNING, pid=7, host="node1").run_id
    points = [Metric("x", v, s, 1000 + s) for s, v in enumerate([NAN, -INF, 1e-300, -0.0])]
    m.log_batch(running, params={"p": "1"}, metrics=points, tags={"t": "y"})
    m.update_run(running, heartbeat=now_ms() - 10 * HOUR_MS)
    ok(invoke(store.path, "rm", "-y", store.r2))
    return [running, store.r2]


def test_export_import_round_trip(store, tmp_path, monkeypatch):
    odd = add_odd_runs(store)
    out = tmp_path / "bundle"
    result = ok(invoke(store.path, "export", store.r1, "-e", "B", "A/r2", "-o", str(out), "--json"))
    summary = json.loads(result.stdout)
    ids = [store.r1, store.r2, *{store.b1, odd[0]}]
    assert set(summary["runs"]) == set(ids) and summary["artifacts"] == 3
    head = json.loads((out / "bundle.json").read_text())
    assert head["format"] == "tracker-bundle" and head["version"] == 1
    assert head["tracker_version"] == tracker.__version__ and set(head["runs"]) == set(ids)
    doc = json.loads((out / "runs" / store.r1 / "run.json").read_text())
    assert [p[2] for p in doc["metrics"]["loss"]] == [1.0, "nan", "inf", "-inf", 0.5, 0.25]
    assert (out / "runs" / store.r1 / "artifacts" / "sub" / "x.json").is_file()

    monkeypatch.setattr(tracker.migrate.write, "METRIC_CHUNK", 2)  # several log_batch calls per run
    fresh = tmp_path / "fresh"
    result = ok(invoke(fresh, "import", str(out)))
    assert "Imported 4 run(s), skipped 0" in result.stdout
    src, dst = store.manager, tracker.connect(fresh)
    for run_id in ids:
        assert snapshot(dst, run_id) == snapshot(src, run_id)
    assert dst.get_run_info(store.r2).lifecycle is Lifecycle.DELETED
    assert dst.get_run_info(odd[0]).status is RunStatus.RUNNING

    # A second import adds nothing.
    data = json.loads(ok(invoke(fresh, "import", str(out), "--json")).stdout)
    assert data["imported"] == [] and set(data["skipped"]) == set(ids)
    assert data["metric_points"] == 0
    for run_id in ids:
        assert snapshot(dst, run_id) == snapshot(src, run_id)
    assert len(dst.search_run_infos(view=ViewType.ALL)) == 4


def test_import_into_postgres(store, tmp_path, pg_uri):
    out = tmp_path / "bundle"
    ok(invoke(store.path, "export", store.r1, store.r2, store.b1, "-o", str(out)))
    art = str(tmp_path / "pg-artifacts")
    args = ["--uri", pg_uri, "--artifact-uri", art, "import", str(out)]
    result = ok(CliRunner().invoke(cli, args))
    assert "Imported 3 run(s)" in result.stdout
    assert "Imported 0 run(s), skipped 3" in ok(CliRunner().invoke(cli, args)).stdout
    src, dst = store.manager, tracker.connect(pg_uri, art)
    for run_id in (store.r1, store.r2, store.b1):
        assert snapshot(dst, run_id) == snapshot(src, run_id)


def test_a_deleted_experiment_exports_and_imports_as_deleted(store, tmp_path):
    ok(invoke(store.path, "rm", "-y", "-e", "B"))
    out = tmp_path / "bundle"
    failed(invoke(store.path, "export", "-e", "B", "-o", str(out)), 1, "--include-deleted")
    ok(invoke(store.path, "export", "-e", "B", "--include-deleted", "-o", str(out)))
    fresh = tmp_path / "fresh"
    ok(invoke(fresh, "import", str(out)))
    m = tracker.connect(fresh)
    assert snapshot(m, store.b1) == snapshot(store.manager, store.b1)
    assert m.get_experiment(m.get_run_info(store.b1).experiment_id).lifecycle is Lifecycle.DELETED
    assert m.find_experiment("B") is None


def test_export_refuses_a_non_empty_directory(store, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    failed(invoke(store.path, "export", store.r1, "-o", str(out)), 2, "not empty")
    ok(invoke(store.path, "export", store.r1, "-o", str(out), "--force"))
    assert (out / "keep.txt").read_text() == "mine" and (out / "bundle.json").is_file()
    assert invoke(store.path, "export", "-o", str(tmp_path / "x")).exit_code == 2
    failed(invoke(store.path, "export", "zzz", "-o", str(tmp_path / "x")), 1, "no run matches")


@pytest.fixture
def exported(store, tmp_path) -> Path:
    out = tmp_path / "bundle"
    ok(invoke(store.path, "export", store.r1, store.b1, "-o", str(out)))
    return out


def edit_json(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b, r: (b / "bundle.json").unlink(), "bundle.json is missing"),
        (lambda b, r: (b / "bundle.json").write_text("{not json"), "not valid JSON"),
        (
            lambda b, r: edit_json(b / "bundle.json", lambda d: d.update(format="zip")),
            "not a tracker bundle",
        ),
        (
            lambda b, r: edit_json(b / "bundle.json", lambda d: d.update(version=2)),
            "version 2 is not supported",
        ),
        (
            lambda b, r: edit_json(b / "bundle.json", lambda d: d.update(runs=["../x"])),
            "not a run id",
        ),
        (lambda b, r: (b / "runs" / r / "run.json").unlink(), "run.json is missing"),
        (
            lambda b, r: edit_json(
                b / "runs" / r / "run.json", lambda d: d["metrics"]["loss"][0].__setitem__(2, "x")
            ),
            "is not a number",
        ),
        (
            lambda b, r: edit_json(
                b / "runs" / r / "run.json", lambda d: d["info"].update(status="DONE")
            ),
            "'DONE' is not a valid RunStatus",
        ),
        (
            lambda b, r: edit_json(
                b / "runs" / r / "run.json", lambda d: d["artifacts"][0].update(path="../../x")
            ),
            "climbs out",
        ),
        (
            lambda b, r: (b / "runs" / r / "artifacts" / "pred.pkl").write_bytes(b"tampered"),
            "'pred.pkl' of run",
        ),
        (
            lambda b, r: (b / "runs" / r / "artifacts" / "sub" / "x.json").unlink(),
            "'sub/x.json' of run",
        ),
    ],
    ids=[
        "no-bundle-json",
        "bad-json",
        "wrong-format",
        "newer-version",
        "bad-run-id",
        "no-run-json",
        "bad-metric",
        "bad-status",
        "escaping-path",
        "tampered-artifact",
        "missing-artifact",
    ],
)
def test_damaged_bundles_import_nothing(store, exported, tmp_path, damage, message):
    damage(exported, store.r1)
    fresh = tmp_path / "fresh"
    failed(invoke(fresh, "import", str(exported)), 1, message)
    if fresh.exists():  # checks run before the store is touched, or before any run is written
        assert tracker.connect(fresh).search_run_infos(view=ViewType.ALL) == []


def test_import_of_a_missing_directory_and_into_no_store(tmp_path, exported):
    failed(invoke(tmp_path / "s", "import", str(tmp_path / "nope")), 1, "not a directory")
    # No --uri and no store found: nothing is created by surprise.
    result = CliRunner().invoke(cli, ["import", str(exported)])
    failed(result, 1, "no tracker store found")
    assert not (tmp_path / ".tracker").exists()


def test_failed_import_leaves_no_half_run(store, exported, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    manager = tracker.connect(fresh)
    real = type(manager).record_artifacts

    def broken(self: Any, run_id: str, entries: Any) -> None:
        raise tracker.StoreError("disk on fire")

    monkeypatch.setattr(type(manager), "record_artifacts", broken)
    failed(invoke(fresh, "import", str(exported)), 1, "disk on fire")
    assert manager.search_run_infos(view=ViewType.ALL) == []
    assert not any(p.is_file() for p in (fresh / "artifacts").rglob("*"))
    monkeypatch.setattr(type(manager), "record_artifacts", real)
    assert "Imported 2 run(s)" in ok(invoke(fresh, "import", str(exported))).stdout


def test_every_command_and_option_has_help():
    for name in ("rm", "restore", "gc", "reap", "verify", "export", "import"):
        command = cli.commands[name]
        assert command.help
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (name, param.name)
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_output_is_plain_without_a_terminal(store):
    ok(invoke(store.path, "rm", "-y", store.r1))
    out = ok(invoke(store.path, "gc", "-n")).stdout + ok(invoke(store.path, "reap", "-n")).stdout
    assert "\x1b[" not in out and store.r1[:12] in out


def _outside(bundle: Path, inner: Path) -> Path:
    """Move ``inner`` out of the bundle and leave a symlink to it in its place: the bytes
    (and so every checksum) are unchanged, only where they live is not the bundle."""
    away = bundle.parent / "elsewhere" / inner.name
    away.parent.mkdir(exist_ok=True)
    inner.rename(away)
    inner.symlink_to(away, target_is_directory=away.is_dir())
    return away


SECRET = b"password=hunter2\n"


def _secret_file(bundle: Path, run_id: str) -> Path:
    """An artifact replaced by a link to a file outside the bundle, its manifest entry
    rewritten to match that file, as someone who knows the file's contents would."""
    secret = bundle.parent / "secret.txt"
    secret.write_bytes(SECRET)
    link = bundle / "runs" / run_id / "artifacts" / "pred.pkl"
    link.unlink()
    link.symlink_to(secret)
    entry = {"size": len(SECRET), "checksum": "sha256:" + hashlib.sha256(SECRET).hexdigest()}
    edit_json(
        bundle / "runs" / run_id / "run.json",
        lambda d: next(a for a in d["artifacts"] if a["path"] == "pred.pkl").update(entry),
    )
    return link


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        (lambda b, r: _outside(b, b / "runs" / r / "artifacts"), "runs/{r}/artifacts"),
        (lambda b, r: _outside(b, b / "runs" / r / "artifacts" / "sub"), "artifacts/sub"),
        (lambda b, r: _outside(b, b / "runs" / r), "runs/{r}"),
        (lambda b, r: _outside(b, b / "runs" / r / "run.json"), "runs/{r}/run.json"),
        (_secret_file, "artifacts/pred.pkl"),
    ],
    ids=["artifacts-dir", "sub-dir", "run-dir", "run-json", "file-to-a-secret"],
)
def test_a_bundle_with_a_symlink_imports_nothing(store, exported, tmp_path, plant, named):
    plant(exported, store.r1)
    fresh = tmp_path / "fresh"
    result = failed(invoke(fresh, "import", str(exported)), 1, "symbolic link")
    assert named.format(r=store.r1) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not fresh.exists()  # refused before the store was even opened


def test_a_bundle_with_a_fifo_imports_nothing(store, exported, tmp_path):
    fifo = exported / "runs" / store.r1 / "artifacts" / "pred.pkl"
    fifo.unlink()
    os.mkfifo(fifo)  # reading it would block for ever
    result = failed(invoke(tmp_path / "fresh", "import", str(exported)), 1, "not a regular file")
    assert "pred.pkl" in result.stderr and not (tmp_path / "fresh").exists()


# ---------------------------------------------------------------- import killed half-way

IMPORT = "import sys; from tracker.cli.main import cli; cli(sys.argv[1:])"
HOST = socket.gethostname()


def big_store(path: Path, runs: int, points: int, files: int, file_size: int) -> list[str]:
    """Runs of many metric points and artifact files: an import of them takes long enough
    to be killed in the middle of one."""
    m = tracker.connect(path)
    exp = m.get_or_create_experiment("big").experiment_id
    scratch = path / "scratch"
    scratch.mkdir()
    ids = []
    for r in range(runs):
        info = m.create_run(exp, f"r{r}", RunStatus.RUNNING)
        points_ = [Metric(k, s * 0.5 + r, s, 1000 + s) for k in "abcd" for s in range(points // 4)]
        m.log_batch(info.run_id, params={"r": str(r)}, metrics=points_, tags={"t": "x"})
        entries = []
        for f in range(files):
            local = scratch / f"f{f}.bin"
            local.write_bytes(os.urandom(file_size))
            entries.append(m.artifacts.put_file(info.artifact_prefix, str(local), f"d{f % 3}"))
        m.record_artifacts(info.run_id, entries)
        m.update_run(info.run_id, status=RunStatus.FINISHED, end_time=now_ms())
        ids.append(info.run_id)
    return ids


def run_state(db: Path, run_id: str) -> tuple[str, str] | None:
    """(status, host) of a run, read straight from the SQLite file while an import writes."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        row = c.execute("SELECT status, host FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else (row[0], row[1] or "")


def start_import(dst: Path, bundle: Path, run_id: str) -> subprocess.Popen[bytes]:
    """A `tracker import` in its own process, returned once it has begun writing ``run_id``."""
    child = subprocess.Popen(
        [sys.executable, "-c", IMPORT, "--uri", str(dst), "import", str(bundle), "--json"],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    # Marked SCHEDULED (right after its insert, which reads RUNNING for an instant).
    while (run_state(dst / "tracker.db", run_id) or ("",))[0] != "SCHEDULED":
        assert child.poll() is None, "the import ended before it was caught half-way"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return child


@pytest.mark.slow
def test_an_import_killed_half_way_is_written_again(tmp_path):
    src = tmp_path / "src"
    ids = big_store(src, runs=3, points=40_000, files=6, file_size=1 << 20)
    bundle = tmp_path / "bundle"
    ok(invoke(src, "export", "-e", "big", "-o", str(bundle)))
    order = json.loads((bundle / "bundle.json").read_text())["runs"]
    dst = tmp_path / "dst"
    tracker.connect(dst)  # the store exists, so the child does not spend its time creating it

    child = start_import(dst, bundle, order[1])  # the second run has begun
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    m = tracker.connect(dst)
    partial = m.get_run_info(order[1])
    assert partial.status is RunStatus.SCHEDULED and partial.host.endswith("(importing)")
    listed = json.loads(ok(invoke(dst, "ls", "big", "--json")).stdout)
    assert {r["run_id"]: r["status"] for r in listed}[order[1]] == "SCHEDULED"

    data = json.loads(ok(invoke(dst, "import", str(bundle), "--json")).stdout)
    assert data["skipped"] == [order[0]] and data["replaced"] == [order[1]]
    assert data["imported"] == order[1:]
    source = tracker.connect(src)
    for run_id in ids:
        assert snapshot(m, run_id) == snapshot(source, run_id)  # every point, checksum, byte
    prefix = Path(m.artifacts.local_dir(m.get_run_info(order[1]).artifact_prefix))
    stored = sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file())
    assert stored == sorted(e.path for e in m.list_artifact_entries(order[1]))  # no strays


@pytest.mark.slow
def test_an_import_in_progress_in_another_process_is_left_to_it(tmp_path):
    ids = big_store(tmp_path / "src", runs=2, points=20_000, files=6, file_size=1 << 20)
    bundle, one = tmp_path / "bundle", tmp_path / "one"
    ok(invoke(tmp_path / "src", "export", "-e", "big", "-o", str(bundle)))
    order = json.loads((bundle / "bundle.json").read_text())["runs"]
    ok(invoke(tmp_path / "src", "export", order[1], "-o", str(one)))
    dst = tmp_path / "dst"
    tracker.connect(dst)

    child = start_import(dst, bundle, order[1])
    child.send_signal(signal.SIGSTOP)  # alive, half-way through the run, and holding still
    try:
        assert run_state(dst / "tracker.db", order[1]) == ("SCHEDULED", f"{HOST} (importing)")
        result = ok(invoke(dst, "import", str(one), "--json"))
    finally:
        child.send_signal(signal.SIGCONT)
    assert json.loads(result.stdout)["skipped"] == [order[1]]
    assert f"warning: run {order[1]} is being imported by another process" in result.stderr
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    assert json.loads(out)["imported"] == order  # its run was left to it
    m, source = tracker.connect(dst), tracker.connect(tmp_path / "src")
    for run_id in ids:
        assert snapshot(m, run_id) == snapshot(source, run_id)


def test_a_partial_import_from_another_machine_is_replaced_once_unheard_of(
    store, exported, tmp_path
):
    fresh = tmp_path / "fresh"
    m = tracker.connect(fresh)
    exp = m.create_experiment("A").experiment_id
    # What an import killed on another machine leaves (see tracker.migrate.write).
    m.create_run(exp, "r1", pid=1, host="elsewhere (importing)", run_id=store.r1)
    m.update_run(store.r1, status=RunStatus.SCHEDULED)
    result = ok(invoke(fresh, "import", str(exported), "--json"))
    assert json.loads(result.stdout)["skipped"] == [store.r1]
    assert "being imported by another process" in result.stderr
    assert m.get_run_info(store.r1).status is RunStatus.SCHEDULED

    m.update_run(store.r1, heartbeat=now_ms() - int(tracker.migrate.write.STALE_AFTER * 1000) - 1)
    data = json.loads(ok(invoke(fresh, "import", str(exported), "--json")).stdout)
    assert data["imported"] == data["replaced"] == [store.r1]
    assert snapshot(m, store.r1) == snapshot(store.manager, store.r1)
