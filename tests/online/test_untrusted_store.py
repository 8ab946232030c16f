"""Commands that only look at a store run no code from it (issue 9, item 18).

Anyone who can write to a shared store (a team bucket) can plant a pickle whose loading runs a
command. ``tracker online`` and ``tracker show`` are run on such a store, as a real process
and through click: the planted command never runs, the command still succeeds, the healthy
run is shown in full and the planted ones each get one line naming what was refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import tracker
from tests.online.tasks import synthetic_task
from tracker import objects
from tracker.cli.main import cli
from tracker.online.model.linear import RidgeModel
from tracker.online.workflow.online.utils import ONLINE_KEY, ONLINE_TAG

SYNTHETIC = {"n_instruments": 3, "n_days": 30}  # business days 2020-01-01 .. 2020-02-11
SEGMENTS = {"train": ("2020-01-01", "2020-01-20"), "test": ("2020-01-21", None)}
ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickles as ``os.system(command)``: what an attacker saves as an artifact."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def pred(last: str) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-21", last)
    index = pd.MultiIndex.from_product([dates, ["A", "B"]], names=["datetime", "instrument"])
    return pd.DataFrame({"score": np.arange(len(index), dtype=float)}, index=index)


@pytest.fixture
def planted(tmp_path) -> tuple[str, dict[str, str], Path]:
    """A store with one healthy online model and three planted ones; and the marker file the
    planted pickles create when they are loaded with plain pickle."""
    marker = tmp_path / "code-ran"
    payload = Payload(f"touch {marker}")
    task = synthetic_task(SEGMENTS, synthetic=SYNTHETIC)
    with_class = synthetic_task(SEGMENTS, synthetic=SYNTHETIC)
    with_class["model"]["class"] = RidgeModel  # Qlib accepts a class here: code, not data
    runs = {
        "healthy": {"task": task, "pred.pkl": pred("2020-02-11")},
        "evil_pred": {"task": task, "pred.pkl": payload},
        "evil_task": {"task": payload, "pred.pkl": pred("2020-02-11")},
        "class_task": {"task": with_class, "pred.pkl": pred("2020-02-10")},
    }
    manager = tracker.connect(tmp_path / "s")
    exp = objects.get_exp(manager, experiment_name="op")
    ids = {}
    for name, files in runs.items():
        rec = exp.start(recorder_name=name)
        rec.save_objects(**files)
        rec.set_tags(**{ONLINE_KEY: ONLINE_TAG})
        exp.end()
        ids[name] = rec.id
    manager.close()
    return str(tmp_path / "s"), ids, marker


def run_cli(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``tracker`` command in a process of its own."""
    code = "import sys; from tracker.cli.main import main; sys.argv[0] = 'tracker'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "--uri", uri, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
        check=False,
        timeout=120,
    )


@pytest.mark.slow
def test_tracker_online_runs_no_code_from_the_store(planted):
    uri, ids, marker = planted
    done = run_cli(uri, "online", "op")
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "a planted pickle ran"
    assert "Traceback" not in done.stdout + done.stderr
    lines = {name: next(x for x in done.stdout.splitlines() if x.strip().startswith(i[:12]))
             for name, i in ids.items()}  # fmt: skip
    assert "RidgeModel train 2020-01-01..2020-01-20 test 2020-01-21..open" in lines["healthy"]
    assert "pred to 2020-02-11 / data to 2020-02-11" in lines["healthy"]
    assert (
        "<not shown: contains code reference tracker.online.model.linear.RidgeModel>"
        in lines["class_task"]
    )
    assert "STALE" in lines["class_task"] and "data to 2020-02-11" in lines["class_task"]
    assert "pred.pkl: artifact 'pred.pkl' refers to posix.system" in done.stdout
    assert "task/data: not a task dict: <not shown: contains code reference posix.system>" in (
        done.stdout
    )

    state = json.loads(ok(CliRunner().invoke(cli, ["--uri", uri, "online", "op", "--json"])))
    models = {m["name"]: m for m in state["online"]}
    assert models["healthy"]["problems"] == [] and not models["healthy"]["stale"]
    assert models["class_task"]["train"] == ["2020-01-01", "2020-01-20"]
    (problem,) = models["evil_pred"]["problems"]
    assert "posix.system" in problem and "trust whoever can write to this store" in problem
    assert models["evil_pred"]["data_end"] == "2020-02-11"  # its task is still shown
    assert models["evil_task"]["pred_end"] == "2020-02-11"
    assert not marker.exists()


def test_tracker_show_runs_no_code_from_the_store(planted):
    uri, ids, marker = planted
    done = run_cli(uri, "show", ids["evil_task"])
    assert done.returncode == 0, done.stderr
    assert "pred.pkl" in done.stdout and "task" in done.stdout
    for name in ("evil_pred", "class_task"):
        record = json.loads(
            ok(CliRunner().invoke(cli, ["--uri", uri, "show", ids[name], "--json"]))
        )
        assert {a["path"] for a in record["artifacts"]} >= {"task", "pred.pkl"}
    assert not marker.exists(), "a planted pickle ran"


def test_plain_load_object_is_pickle_as_in_qlib(planted):
    """The counterpart, so that the tests above cannot pass for a wrong reason: the planted
    artifact does run when loaded with plain pickle (what load_object is, as in Qlib)."""
    uri, ids, marker = planted
    manager = tracker.connect(uri)
    objects.get_exp(manager, experiment_name="op").get_recorder(ids["evil_pred"]).load_object(
        "pred.pkl"
    )
    manager.close()
    assert marker.exists()


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stdout
