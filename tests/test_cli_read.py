"""The read commands (``tracker ls``, ``show``, ``diff``) through click's CliRunner against real
SQLite stores built with the public API."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import tracker
from tracker import RunStatus, objects
from tracker.cli.diff import change
from tracker.cli.main import cli
from tracker.cli.spark import NAN_MARK, POS_INF_MARK, TICKS, downsample, sparkline
from tracker.entities import Metric

OLD_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: long past the stale threshold
PATCH_A = "diff --git a/train.py b/train.py\n-lr = 0.1\n+lr = 0.05\n"
PATCH_B = "diff --git a/train.py b/train.py\n-lr = 0.1\n+lr = 0.01\n"


@dataclass
class Store:
    uri: str
    manager: tracker.ExpManager
    runs: dict[str, str]  # label -> run id

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--uri", self.uri, *args])


def _record(exp, name: str, params: dict, metrics: list[dict], tags=None, objects=None) -> str:
    rec = exp.start(recorder_name=name)
    rec.log_params(**params)
    for step, values in enumerate(metrics):
        rec.log_metrics(step=step, **values)
    if tags:
        rec.set_tags(**tags)
    if objects:
        rec.save_objects(**objects)
    exp.end()
    time.sleep(0.005)  # distinct start times, so "newest first" is well defined
    return rec.id


@pytest.fixture
def store(tmp_path) -> Store:
    manager = tracker.connect(tmp_path / "s")
    alpha = objects.get_exp(manager, experiment_name="alpha")
    beta = objects.get_exp(manager, experiment_name="beta")
    runs = {
        "lgb": _record(
            alpha, "lgb", {"model": "lgb", "lr": 0.1, "universe": 50},
            [{"IC": 0.01 * s, "loss": 1.0 / (s + 1)} for s in range(6)],
            tags={"stage": "dev", "tracker.git_commit": "a" * 40, "tracker.git_dirty": "true"},
            objects={"pred.pkl": [1, 2, 3], "code_diff.txt": PATCH_A, "only_a.txt": "x"},
        ),
        "linear": _record(
            alpha, "linear", {"model": "linear", "lr": 0.05, "universe": 50},
            [{"IC": 0.02, "loss": math.nan}, {"IC": 0.04, "loss": 0.5}],
            tags={"stage": "prod", "tracker.git_commit": "b" * 40, "tracker.git_dirty": "true"},
            objects={"pred.pkl": [4, 5, 6], "code_diff.txt": PATCH_B, "only_b.txt": "y"},
        ),
        "other": _record(
            beta, "gru", {"model": "gru", "lr": 0.1, "universe": 50},
            [{"IC": 0.0, "ICIR": 1.5}], objects={"pred.pkl": [1, 2, 3]},
        ),
    }  # fmt: skip
    exp_id = alpha.id
    stale = manager.create_run(exp_id, "crashed", start_time=OLD_MS, pid=4242, host="gpu1")
    manager.update_run(stale.run_id, heartbeat=OLD_MS + 1000)
    runs["stale"] = stale.run_id
    gone = manager.create_run(exp_id, "deleted-one", RunStatus.RUNNING, start_time=OLD_MS - 1)
    manager.update_run(gone.run_id, status=RunStatus.FINISHED, end_time=OLD_MS)
    manager.delete_run(gone.run_id)
    runs["deleted"] = gone.run_id
    yield Store(str(tmp_path / "s"), manager, runs)
    manager.close()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def failed(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result.stderr


# --------------------------------------------------------------------------------------- ls


def test_ls_experiments_table(store):
    out = ok(store.invoke("ls")).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["id", "experiment", "runs", "status", "last", "activity"]
    alpha = next(line for line in lines if " alpha " in line)
    assert "3" in alpha.split() and "1 stale" in alpha and "2 finished" in alpha
    assert "beta" in out and "deleted" not in out


def test_ls_experiments_json_csv_md(store):
    data = json.loads(ok(store.invoke("ls", "--json")).stdout)
    by_name = {e["name"]: e for e in data}
    assert by_name["alpha"]["runs"] == 3
    assert by_name["alpha"]["statuses"] == {"finished": 2, "stale": 1}
    assert by_name["beta"]["statuses"] == {"finished": 1}
    assert isinstance(by_name["alpha"]["last_activity"], int)
    with_deleted = json.loads(ok(store.invoke("ls", "--all", "--json")).stdout)
    assert {e["name"]: e["runs"] for e in with_deleted}["alpha"] == 4
    rows = list(csv.DictReader(io.StringIO(ok(store.invoke("ls", "--csv")).stdout)))
    assert {r["experiment"]: r["runs"] for r in rows} == {"alpha": "3", "beta": "1"}
    md = ok(store.invoke("ls", "--md")).stdout
    assert md.startswith("| id | experiment |") and "| --- |" in md


def test_ls_runs_table_picks_useful_columns(store):
    out = ok(store.invoke("ls", "alpha")).stdout
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["id", "name", "status", "start", "duration"]
    assert "IC" in header and "loss" in header
    assert "model" in header or "lr" in header  # params that vary
    assert "universe" not in header  # the same in every run: says nothing
    assert "cmd-sys.argv" not in out
    assert [line.split()[1] for line in lines[1:]] == ["linear", "lgb", "crashed"]
    assert lines[1].split()[0] == store.runs["linear"][:8]
    crashed = lines[3].split()
    assert crashed[2] == "stale"
    assert "deleted-one" not in out
    assert max(len(line) for line in lines) <= 80


def test_ls_runs_fit_80_columns_with_many_keys(tmp_path):
    manager = tracker.connect(tmp_path / "wide")
    exp = objects.get_exp(manager, experiment_name="wide")
    for i in range(3):
        _record(
            exp,
            f"run{i}",
            {f"param_{j}": f"value-{i}-{j}" for j in range(12)},
            [{f"metric_{j}": i * 0.123456 + j for j in range(12)}],
        )
    result = CliRunner().invoke(cli, ["--uri", str(tmp_path / "wide"), "ls", "wide"])
    lines = ok(result).stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "metric_0" in lines[0] and "param_" in lines[0]
    everything = ok(
        CliRunner().invoke(
            cli, ["--uri", str(tmp_path / "wide"), "ls", "wide", "--metrics", "*", "--params", "*"]
        )
    ).stdout
    assert "metric_11" in everything and "param_11" in everything  # named: never dropped
    manager.close()


def test_ls_runs_json_has_everything(store):
    data = json.loads(ok(store.invoke("ls", "alpha", "--json")).stdout)
    assert [r["name"] for r in data] == ["linear", "lgb", "crashed"]
    lgb = data[1]
    assert lgb["run_id"] == store.runs["lgb"] and len(lgb["run_id"]) == 32
    assert lgb["params"]["model"] == "lgb" and "cmd-sys.argv" in lgb["params"]
    assert lgb["metrics"]["IC"] == pytest.approx(0.05)
    assert lgb["tags"]["stage"] == "dev"
    assert lgb["status"] == "FINISHED" and lgb["stale"] is False
    assert isinstance(lgb["start_time"], int) and lgb["start_time_iso"].endswith("+00:00")
    assert lgb["experiment"] == "alpha" and lgb["duration_ms"] >= 0
    assert data[2]["status"] == "RUNNING" and data[2]["stale"] is True
    assert data[0]["metrics"]["IC"] == pytest.approx(0.04)
    every = json.loads(ok(store.invoke("ls", "alpha", "--all", "--json")).stdout)
    assert {r["name"]: r["lifecycle"] for r in every}["deleted-one"] == "deleted"


def test_ls_runs_csv_and_md(store):
    out = ok(store.invoke("ls", "alpha", "--csv", "--metrics", "IC", "--params", "lr")).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["id", "name", "status", "start", "duration", "metrics.IC", "params.lr"]
    assert float(rows[1]["metrics.IC"]) == 0.05 and rows[1]["params.lr"] == "0.1"
    assert rows[0]["start"].endswith("+00:00")  # ISO in CSV, for scripts
    md = ok(store.invoke("ls", "alpha", "--md")).stdout
    assert md.startswith("| id | name | status |") and md.count("\n") == 5


def test_ls_filter_sort_limit_columns(store):
    out = ok(store.invoke("ls", "alpha", "--filter", "params.model = 'lgb'")).stdout
    assert "lgb" in out and "linear" not in out
    out = ok(store.invoke("ls", "alpha", "--sort", "-metrics.IC", "--columns", "name")).stdout
    assert out.split() == ["name", "lgb", "linear", "crashed"]
    out = ok(store.invoke("ls", "alpha", "--sort", "metrics.IC ASC", "--columns", "name")).stdout
    assert out.split() == ["name", "linear", "lgb", "crashed"]
    result = ok(store.invoke("ls", "alpha", "--limit", "1"))
    assert len(result.stdout.splitlines()) == 2 and "--limit 0" in result.stderr
    out = ok(store.invoke("ls", "alpha", "--columns", "run_id,host,pid,tags.stage,lifecycle"))
    assert out.stdout.split()[:5] == ["run_id", "host", "pid", "stage", "lifecycle"]
    assert store.runs["stale"] in out.stdout and "gpu1" in out.stdout and "4242" in out.stdout
    assert "dev" in out.stdout and "prod" in out.stdout
    all_runs = ok(store.invoke("ls", "alpha", "--all", "--columns", "name,lifecycle")).stdout
    assert "deleted-one  deleted" in all_runs
    by_id = ok(store.invoke("ls", "2", "--columns", "name")).stdout  # an experiment id
    assert by_id.split() == ["name", "gru"]


@pytest.fixture
def many(tmp_path) -> Store:
    """60 finished runs, newest last; only the oldest logged the metric ``rare``."""
    manager = tracker.connect(tmp_path / "many")
    exp_id = manager.get_or_create_experiment("many").experiment_id
    runs = {}
    for i in range(60):
        info = manager.create_run(exp_id, f"run{i:02d}", start_time=OLD_MS + i)
        metrics = [Metric("IC", i / 100, 0, OLD_MS + i)] + (
            [Metric("rare", 1.0, 0, OLD_MS)] if i == 0 else []
        )
        manager.log_batch(info.run_id, params={"seed": str(i)}, metrics=metrics)
        manager.update_run(info.run_id, status=RunStatus.FINISHED, end_time=OLD_MS + i + 1)
        runs[info.name] = info.run_id
    yield Store(str(tmp_path / "many"), manager, runs)
    manager.close()


def test_ls_machine_readable_output_is_complete(many):
    result = ok(many.invoke("ls", "many", "--json"))
    assert len(json.loads(result.stdout)) == 60 and result.stderr == ""
    rows = list(csv.DictReader(io.StringIO(ok(many.invoke("ls", "many", "--csv")).stdout)))
    assert [r["name"] for r in rows] == [f"run{i:02d}" for i in range(59, -1, -1)]
    md = ok(many.invoke("ls", "many", "--md")).stdout.splitlines()
    assert len(md) == 2 + 60 and "run00" in md[-1]
    limited = ok(many.invoke("ls", "many", "--json", "--limit", "5"))
    assert len(json.loads(limited.stdout)) == 5
    assert "showing the newest 5 of 60 runs, 55 more" in limited.stderr  # never silent


def test_ls_table_pages_and_says_how_many_more(many):
    result = ok(many.invoke("ls", "many", "--columns", "name"))
    assert result.stdout.split()[1:] == [f"run{i:02d}" for i in range(59, 9, -1)]
    assert "(showing the newest 50 of 60 runs, 10 more; --limit 0 shows all" in result.stderr
    assert "--json" in result.stderr
    everything = ok(many.invoke("ls", "many", "--columns", "name", "--limit", "0"))
    assert len(everything.stdout.split()) == 61 and everything.stderr == ""
    first = ok(
        many.invoke("ls", "many", "--columns", "name", "--sort", "metrics.IC", "--limit", "3")
    )
    assert first.stdout.split() == ["name", "run00", "run01", "run02"]
    assert "showing the first 3 of 60 runs, 57 more" in first.stderr


def test_ls_warns_about_unknown_keys(many):
    unknown = "no run of 'many' has the"
    cases = [
        (("--sort", "-metrics.ICC"), f"--sort: {unknown} metric 'ICC'; did you mean 'IC'?"),
        (("--metrics", "IC,bogus"), f"--metrics: {unknown} metric 'bogus'"),
        (("--params", "sede"), f"--params: {unknown} param 'sede'; did you mean 'seed'?"),
        (("--columns", "name,tags.stage"), f"--columns: {unknown} tag 'stage'"),
    ]
    for args, warning in cases:
        result = ok(many.invoke("ls", "many", *args))
        lines = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(lines) == 1 and warning in lines[0], result.stderr
    listed = ok(many.invoke("ls", "many", "--metrics", "x", "--limit", "0")).stderr
    assert "(the metrics of the runs shown: IC, rare)" in listed
    # A key that only runs beyond the page have is known: no warning.
    rare = ok(many.invoke("ls", "many", "--columns", "name,metrics.rare", "--limit", "3"))
    assert "warning" not in rare.stderr
    quiet = ok(many.invoke("ls", "many", "--sort", "-metrics.IC", "--metrics", "*", "--limit", "1"))
    assert "warning" not in quiet.stderr


def test_ls_filters_status_as_it_prints_it(store):
    def names(flt: str) -> list[str]:
        return ok(store.invoke("ls", "alpha", "--filter", flt, "--columns", "name")).stdout.split()

    assert names("status = 'finished'") == ["name", "linear", "lgb"]
    assert names("status = 'stale'") == ["name", "crashed"]
    assert names("attributes.status = 'RUNNING'") == ["name", "crashed"]  # stale is RUNNING
    assert names("status != 'stale' and status ilike 'fin%'") == ["name", "linear", "lgb"]


def test_ls_refuses_oversized_filters_in_one_line(store):
    huge = " and ".join(f"metrics.m{i} > 0" for i in range(5000))
    err = failed(store.invoke("ls", "alpha", "--filter", huge))
    assert err.strip().splitlines() == [
        "Error: the filter has more than 256 comparisons; narrow it, or use IN lists "
        "(metrics.x IN (1, 2, 3)) where comparisons share a key"
    ]
    deep = "(" * 330 + "metrics.IC > 0" + ")" * 330
    err = failed(store.invoke("ls", "alpha", "--filter", deep))
    assert len(err.strip().splitlines()) == 1 and "more than 32 deep" in err


def test_ls_errors(store):
    err = failed(store.invoke("ls", "nope"))
    assert "no experiment named 'nope'" in err and "'alpha'" in err and "'beta'" in err
    err = failed(store.invoke("ls", "alpha", "--filter", "metrics.IC >> 1"))
    assert "metrics.IC >> 1" in err and "^" in err
    err = failed(store.invoke("ls", "alpha", "--sort", "metrics.IC SIDEWAYS"))
    assert "Error" in err
    assert "unknown column" in failed(store.invoke("ls", "alpha", "--columns", "bogus"), 2)
    failed(store.invoke("ls", "--bogus"), 2)
    failed(store.invoke("ls", "alpha", "--limit", "-1"), 2)
    failed(store.invoke("ls", "--filter", "status = 'RUNNING'"), 2)  # needs an experiment


def test_no_store_says_where_it_looked(tmp_path):
    for args in (["ls"], ["ls", "x"], ["show", "abc"], ["diff", "a", "b"]):
        err = failed(CliRunner().invoke(cli, args))
        assert "no tracker store found" in err and str(tmp_path) in err


# ------------------------------------------------------------------------------------- show


def test_show_table(store):
    out = ok(store.invoke("show", store.runs["lgb"][:6])).stdout
    head = _header(out)
    assert head["run"] == store.runs["lgb"] and head["name"] == "lgb"
    assert head["experiment"] == "alpha (id 1)" and head["status"] == "finished"
    assert "took" in head["end"] and head["process"].startswith("pid ")
    assert head["code"] == "commit aaaaaaaaaaaa, uncommitted changes: code_diff.txt 54 B"
    assert "model" in out and "cmd-sys.argv" in out
    ic = next(line for line in out.splitlines() if line.startswith("IC "))
    assert ic.split()[:5] == ["IC", "0.05", "0", "0.05", "6"]
    assert set(ic.split()[5]) <= set(TICKS) and len(ic.split()[5]) == 6
    assert "stage" in out and "tracker.git_commit" not in out  # shown as the code line
    assert "pred.pkl" in out and "only_a.txt" in out and "1 B" in out


def _header(out: str) -> dict[str, str]:
    """The key-value block at the top of ``show``."""
    block = out.split("\n\n", 1)[0].splitlines()
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in block)


def test_show_by_name_and_stale(store):
    head = _header(ok(store.invoke("show", "alpha/crashed")).stdout)
    assert head["run"] == store.runs["stale"] and head["status"] == "stale"
    assert head["process"] == "pid 4242 on gpu1"
    assert head["heartbeat"].endswith("m ago") and 59 <= int(head["heartbeat"][:-5]) <= 120
    assert head["running for"] == "1.0s"  # a stale run stopped at its last heartbeat
    assert head["code"].startswith("not recorded")
    deleted = ok(store.invoke("show", store.runs["deleted"])).stdout
    assert "deleted" in deleted and "tracker restore" in deleted


def test_show_json(store):
    data = json.loads(ok(store.invoke("show", store.runs["linear"], "--json")).stdout)
    assert data["run_id"] == store.runs["linear"] and data["experiment"] == "alpha"
    assert data["params"]["model"] == "linear"
    history = data["metric_history"]["loss"]
    assert [p["step"] for p in history] == [0, 1]
    assert history[0]["value"] == "nan" and history[1]["value"] == 0.5  # JSON has no NaN
    assert {a["path"] for a in data["artifacts"]} >= {"pred.pkl", "code_diff.txt"}
    assert all(a["checksum"].startswith("sha256:") for a in data["artifacts"])
    assert data["code"] == {"commit": "b" * 40, "dirty": True, "recorded": ["code_diff.txt"]}


def test_show_metric_history(store):
    ref = store.runs["lgb"]
    out = ok(store.invoke("show", ref, "--metric", "loss")).stdout.splitlines()
    assert out[0].split() == ["step", "loss", "time"] and len(out) == 7
    assert out[2].split()[:2] == ["1", "0.5"]
    rows = list(
        csv.reader(io.StringIO(ok(store.invoke("show", ref, "--metric", "IC", "--csv")).stdout))
    )
    assert rows[0] == ["step", "value", "timestamp"] and len(rows) == 7
    assert float(rows[4][1]) == 0.03 and int(rows[4][2]) > 1e12
    points = json.loads(ok(store.invoke("show", ref, "--metric", "IC", "--json")).stdout)
    assert [p["step"] for p in points] == list(range(6))
    err = failed(store.invoke("show", ref, "--metric", "nope"))
    assert "no metric 'nope'" in err and "IC, loss" in err


def test_show_errors(store):
    assert "no run matches 'ffff0000'" in failed(store.invoke("show", "ffff0000"))
    assert "no run named 'zzz'" in failed(store.invoke("show", "alpha/zzz"))
    assert "no experiment named" in failed(store.invoke("show", "nope/lgb"))
    failed(store.invoke("show", store.runs["lgb"], "--csv"), 2)
    failed(store.invoke("show"), 2)


def test_ambiguous_prefix_lists_candidates(store):
    exp = store.manager.get_experiment_by_name("beta").experiment_id
    ids = ["abc" + "0" * 29, "abd" + "0" * 29]
    for run_id in ids:
        store.manager.create_run(exp, f"twin-{run_id[:3]}", run_id=run_id)
    err = failed(store.invoke("show", "ab"))
    assert "ambiguous" in err and "abc000000000 (twin-abc)" in err and "twin-abd" in err
    assert "twin-abd" in ok(store.invoke("show", "abd")).stdout
    assert "ambiguous" in failed(store.invoke("diff", "ab", store.runs["lgb"]))


# ------------------------------------------------------------------------------------- diff


def test_diff_table(store):
    a, b = store.runs["lgb"], store.runs["linear"]
    out = ok(store.invoke("diff", a[:8], b[:8])).stdout
    assert "runs (commits differ)" in out
    assert "params: 2 of 4 differ (--all shows all)" in out
    param_lines = [line.split() for line in out.splitlines() if line.startswith(("lr ", "model "))]
    assert ["lr", "0.1", "0.05"] in param_lines and ["model", "lgb", "linear"] in param_lines
    assert "universe" not in out
    ic = next(line for line in out.splitlines() if line.startswith("IC "))
    assert ic.split() == ["IC", "0.05", "0.04", "-0.01", "(-20.0%)"]
    assert "tags: 1 of 1 differ" in out
    assert "artifacts: 2 changed, 1 added, 1 removed (of 4)" in out
    arts = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    assert arts["only_a.txt"] == ["1", "B", "removed"]
    assert arts["only_b.txt"] == ["-", "added", "1", "B"]
    assert arts["pred.pkl"][2] == "changed"
    full = ok(store.invoke("diff", a, b, "--all")).stdout
    assert "universe" in full and "stage" in full


def test_diff_across_experiments_json(store):
    a, b, c = store.runs["lgb"], store.runs["other"], store.runs["linear"]
    data = json.loads(ok(store.invoke("diff", a, b, c, "--json")).stdout)
    assert [r["run_id"] for r in data["runs"]] == [a, b, c]
    assert [r["experiment"] for r in data["runs"]] == ["alpha", "beta", "alpha"]
    assert data["params"]["model"] == ["lgb", "gru", "linear"]
    assert "universe" not in data["params"]
    ic = data["metrics"]["IC"]
    assert ic["values"] == pytest.approx([0.05, 0.0, 0.04])
    assert ic["change"][0] == 0 and ic["change"][1] == pytest.approx(-0.05)
    assert ic["relative"][1] == pytest.approx(-1.0) and ic["relative"][2] == pytest.approx(-0.2)
    assert data["metrics"]["ICIR"]["values"] == [None, 1.5, None]
    assert data["artifacts"]["pred.pkl"]["status"] == [None, "same", "changed"]
    assert data["artifacts"]["code_diff.txt"]["entries"][1] is None
    assert data["code"]["commits"] == ["a" * 40, None, "b" * 40]
    assert data["code"]["dirty"] == [True, None, True]
    table = ok(store.invoke("diff", a, b, c)).stdout
    assert "vs " in table and "beta" in table


def test_diff_md(store):
    out = ok(store.invoke("diff", store.runs["lgb"], store.runs["linear"], "--md")).stdout
    assert "### params: 2 of 4 differ" in out and "| param |" in out and "| IC | 0.05 |" in out


def test_diff_code(store):
    a, b, other = store.runs["lgb"], store.runs["linear"], store.runs["other"]
    out = ok(store.invoke("diff", a, b, "--code")).stdout
    assert f"--- {a[:8]}/code_diff.txt" in out and f"+++ {b[:8]}/code_diff.txt" in out
    assert "-+lr = 0.05" in out and "++lr = 0.01" in out
    assert "code_cached.txt" not in out  # neither run recorded one
    assert (
        f"code_diff.txt: not recorded for {other[:8]}"
        in ok(store.invoke("diff", a, other, "--code")).stdout
    )
    assert "identical" in ok(store.invoke("diff", a, a, "--code")).stdout
    md = ok(store.invoke("diff", a, b, "--code", "--md")).stdout
    assert "```diff\n---" in md
    data = json.loads(ok(store.invoke("diff", a, b, "--code", "--json")).stdout)
    patch = data["code"]["patches"]["code_diff.txt"][0]
    assert patch["recorded"] == [True, True] and "++lr = 0.01" in patch["diff"]
    assert "patches" not in json.loads(ok(store.invoke("diff", a, b, "--json")).stdout)["code"]


def test_diff_usage_errors(store):
    assert "at least two runs" in failed(store.invoke("diff", store.runs["lgb"]), 2)
    failed(store.invoke("diff"), 2)
    assert "no run matches" in failed(store.invoke("diff", store.runs["lgb"], "ffff"))


def test_change():
    assert change(2.0, 3.0) == (1.0, 0.5)
    assert change(-2.0, -1.0) == (1.0, 0.5)  # relative to the size of the base
    assert change(0.0, 1.0) == (1.0, None)
    assert change(None, 1.0) == (None, None) and change(1.0, None) == (None, None)
    assert change(math.nan, 1.0) == (None, None)
    assert change(1.0, math.inf) == (math.inf, None)


# ----------------------------------------------------------------------------------- spark


def test_sparkline():
    assert sparkline([]) == "" and sparkline([1.0]) == ""
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == TICKS
    assert sparkline([3.0, 3.0, 3.0]) == TICKS[3] * 3
    assert sparkline([0.0, math.nan, 1.0]) == TICKS[0] + NAN_MARK + TICKS[-1]
    assert sparkline([0.0, math.inf, 1.0]) == TICKS[0] + POS_INF_MARK + TICKS[-1]
    assert sparkline([-math.inf, math.nan]) == "↓" + NAN_MARK
    long = sparkline([float(i) for i in range(10_000)], width=16)
    assert len(long) == 16 and long[0] == TICKS[0] and long[-1] == TICKS[-1]
    assert list(long) == sorted(long)
    assert len(downsample(list(range(17)), 16)) == 16
    assert downsample([1.0, math.nan, math.nan, 3.0], 2) == [1.0, 3.0]  # NaN does not hide


# ------------------------------------------------------------------------ help, import path


def test_every_read_command_and_option_has_help():
    for name in ("ls", "show", "diff"):
        command = cli.commands[name]
        assert command.help
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts} has no help"
        assert "Usage" in ok(CliRunner().invoke(cli, [name, "--help"])).stdout


def test_read_commands_import_no_heavy_modules(store):
    code = f"""
import sys
from tracker.cli.main import cli
ref = {store.runs["lgb"][:8]!r}
for args in (["ls"], ["ls", "alpha"], ["show", ref], ["diff", ref, {store.runs["other"]!r}]):
    cli.main(["--uri", {store.uri!r}, *args], standalone_mode=False)
heavy = [m for m in ("pandas", "numpy", "pyarrow", "sqlalchemy", "sqlmodel", "rich")
         if m in sys.modules]
print("HEAVY", heavy)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
