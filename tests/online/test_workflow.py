"""task_train / begin / end, ``tracker run`` and ``tracker batch`` end to end on synthetic
data, against a real store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import tracker
from tests.online.tasks import SIGNAL_RECORD, synthetic_task
from tracker import R, objects
from tracker.cli.main import cli
from tracker.online.model.train import (
    begin_task_train,
    end_task_train,
    fill_placeholder,
    task_train,
)

SEGMENTS = {
    "train": ["2020-01-01", "2020-09-30"],
    "valid": ["2020-10-01", "2020-12-31"],
    "test": ["2021-01-01", None],
}


def make_task(model: str = "RidgeModel", **model_kwargs) -> dict:
    return synthetic_task(
        SEGMENTS,
        synthetic={"n_instruments": 40, "n_days": 380, "seed": 1, "signal": 0.1},
        model=model,
        model_kwargs={"seed": 0, **model_kwargs},
        records=[
            SIGNAL_RECORD,
            {"class": "SigAnaRecord", "kwargs": {"ana_long_short": True, "ann_scaler": 252}},
            {"class": "PortAnaRecord", "kwargs": {"topk": 10, "n_drop": 2, "ann_scaler": 252}},
        ],
    )


EXPECTED_ARTIFACTS = {
    "task",
    "params.pkl",
    "dataset",
    "pred.pkl",
    "label.pkl",
    "sig_analysis/ic.pkl",
    "sig_analysis/ric.pkl",
    "portfolio_analysis/report_normal_1day.pkl",
    "portfolio_analysis/positions_normal_1day.pkl",
    "portfolio_analysis/port_analysis_1day.pkl",
}


def test_fill_placeholder():
    task = {"dataset": {"kwargs": {"segments": {"test": ["2021-01-01", None]}}}}
    config = {
        "a": "<MODEL>",
        "b": ["<dataset.kwargs.segments.test.0>", "keep"],
        "c": ("<DATASET>",),
    }
    out = fill_placeholder(config, {"<MODEL>": 1, "<DATASET>": 2}, task)
    assert out == {"a": 1, "b": ["2021-01-01", "keep"], "c": (2,)}
    with pytest.raises(tracker.InvalidInputError, match="no 'dataset.nope'"):
        fill_placeholder("<dataset.nope>", {}, task)


def test_task_train_records_everything(tmp_path):
    tracker.init(tmp_path / "s")
    task = make_task("LGBModel", num_boost_round=60, early_stopping_rounds=10, num_leaves=8)
    rec = task_train(task, "wf", recorder_name="lgb")
    assert rec.refresh().status == "FINISHED"
    assert set(rec.list_artifacts(recursive=True)) >= EXPECTED_ARTIFACTS
    params = rec.list_params()
    assert params["model.class"] == "LGBModel"
    assert params["dataset.kwargs.segments.test"] == str(SEGMENTS["test"])
    metrics = rec.list_metrics()
    for key in ("IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return",
                "1day.excess_return_without_cost.annualized_return",
                "1day.excess_return_with_cost.max_drawdown", "l2.train", "l2.valid"):  # fmt: skip
        assert key in metrics, key
    assert metrics["IC"] > 0  # the synthetic market has a real signal
    assert len(rec.get_metric_history("l2.train")) > 1
    assert rec.load_object("task") == task
    assert rec.list_tags()["hostname"]
    pred = rec.load_object("pred.pkl")
    assert list(pred.columns) == ["score"] and pred.index.names == ["datetime", "instrument"]
    dataset = rec.load_object("dataset")
    assert dataset.prepare("test", col_set="feature").shape[0] == pred.shape[0]


def test_begin_then_end_task_train_resumes_the_same_recorder(tmp_path):
    tracker.init(tmp_path / "s")
    rec = begin_task_train(make_task(), "delayed")
    assert rec.refresh().status == "FINISHED"
    assert set(rec.list_artifacts()) == {"task"}
    done = end_task_train(rec, "delayed")
    assert done.id == rec.id
    assert set(done.list_artifacts(recursive=True)) >= EXPECTED_ARTIFACTS
    assert len(R.list_recorders(experiment_name="delayed")) == 1


def test_failed_training_marks_the_run_failed(tmp_path):
    tracker.init(tmp_path / "s")
    task = make_task(bogus_argument=1)
    with pytest.raises(tracker.InvalidInputError, match="bogus_argument"):
        task_train(task, "bad")
    rec = R.get_exp(experiment_name="bad", create=False).list_recorders(rtype="list")[0]
    assert rec.status == "FAILED"


def write_config(path: Path, model: str = "RidgeModel", **kw) -> Path:
    path.write_text(yaml.safe_dump({"task": make_task(model, **kw)}))
    return path


def test_tracker_run_cli(tmp_path):
    config = write_config(tmp_path / "ridge.yaml")
    result = CliRunner().invoke(
        cli, ["--uri", str(tmp_path / "s"), "run", str(config), "-e", "cli"]
    )
    assert result.exit_code == 0, result.output
    assert "FINISHED" in result.stdout and "IC" in result.stdout
    manager = tracker.connect(tmp_path / "s")
    rec = objects.get_exp(manager, experiment_name="cli", create=False).list_recorders(
        rtype="list"
    )[0]
    assert rec.load_object("config")["task"]["model"]["class"] == "RidgeModel"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda t: t["model"].update({"class": "Nope"}),
            "task.model: module 'tracker.online.model.linear' has no class 'Nope'",
        ),
        (lambda t: t["dataset"]["kwargs"]["segments"].pop("test"), "segments.test is missing"),
        (
            lambda t: t["dataset"]["kwargs"]["handler"]["kwargs"].update(
                {"data": "/no/such.parquet"}
            ),
            "does not exist",
        ),
    ],
    ids=["unknown-class", "missing-segment", "missing-data"],
)
def test_tracker_run_refuses_bad_config_before_training(tmp_path, mutate, match):
    task = make_task()
    mutate(task)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"task": task}))
    result = CliRunner().invoke(
        cli, ["--uri", str(tmp_path / "s"), "run", str(tmp_path / "bad.yaml")]
    )
    assert result.exit_code == 1
    assert match in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()  # nothing trained, no store created


@pytest.mark.slow
def test_tracker_batch_parallel_table(tmp_path):
    configs = [
        write_config(tmp_path / "ridge.yaml"),
        write_config(tmp_path / "ridge_strong.yaml", alpha=100.0),
        write_config(tmp_path / "broken.yaml", bogus_argument=1),  # fails in every run
    ]
    result = CliRunner().invoke(
        cli,
        [
            "--uri",
            str(tmp_path / "s"),
            "batch",
            *map(str, configs),
            "--times",
            "2",
            "--jobs",
            "2",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1, result.output  # some runs failed
    table = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert table[0] == (
        "| Model Name | Dataset | IC | ICIR | Rank IC | Rank ICIR | Annualized Return "
        "| Information Ratio | Max Drawdown |"
    )
    assert [line.split(" | ")[0] for line in table[2:]] == ["| ridge", "| ridge_strong"]
    cells = table[2].strip("| ").split(" | ")
    assert cells[1] == "synthetic" and all("±" in c for c in cells[2:])
    assert (tmp_path / "out" / "table.csv").read_text().startswith("Model Name,Dataset,IC")
    manager = tracker.connect(tmp_path / "s")
    assert (
        len(objects.get_exp(manager, experiment_name="ridge", create=False).list_recorders()) == 2
    )
    assert "4 of 6 runs finished" in result.stderr  # the failures did not stop the others
    assert "FAILED broken seed 0" in result.stderr and "FAILED broken seed 1" in result.stderr
    assert "bogus_argument" in result.stderr and "Error: 2 of 6 runs failed" in result.stderr


@pytest.mark.slow
def test_tracker_batch_averages_only_its_own_runs(tmp_path):
    store = str(tmp_path / "s")
    earlier = write_config(tmp_path / "earlier.yaml", alpha=1000.0)
    ran = CliRunner().invoke(cli, ["--uri", store, "run", str(earlier), "-e", "ridge"])
    assert ran.exit_code == 0, ran.output  # an earlier run in the batch's experiment
    config = write_config(tmp_path / "ridge.yaml")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--uri", store, "batch", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    exp = objects.get_exp(tracker.connect(store), experiment_name="ridge", create=False)
    runs = exp.list_recorders(rtype="list")
    (old,) = [r for r in runs if "model.kwargs.alpha" in r.list_params()]
    (own,) = [r for r in runs if r != old]
    ic, old_ic = own.list_metrics()["IC"], old.list_metrics()["IC"]
    assert f"{ic:5.4f}" != f"{old_ic:5.4f}"  # averaging both would show
    row = (out / "table.md").read_text().splitlines()[2].strip("| ").split(" | ")
    assert row[2:4] == [f"{ic:5.4f}±0.00", f"{own.list_metrics()['ICIR']:5.4f}±0.00"]
    batch_id = re.search(r"batch (\w+): 1 of 1 runs finished", result.stderr).group(1)
    assert own.list_tags()["tracker.batch"] == batch_id and "tracker.batch" not in old.list_tags()


@pytest.mark.slow
def test_tracker_batch_fails_when_every_run_fails(tmp_path):
    broken = write_config(tmp_path / "broken.yaml", bogus_argument=1)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["--uri", str(tmp_path / "s"), "batch", str(broken), "--times", "2", "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "0 of 2 runs finished" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: 2 of 2 runs failed"]
    assert len((out / "table.md").read_text().splitlines()) == 2  # the header only


@pytest.mark.slow
def test_tracker_batch_isolated_venv(tmp_path):
    folder = tmp_path / "ridge"
    folder.mkdir()
    config = write_config(folder / "ridge.yaml")
    (folder / "requirements.txt").write_text("# nothing beyond what tracker needs\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["--uri", str(tmp_path / "s"), "batch", str(config), "--isolate", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1 of 1 runs finished" in result.stderr
    env_python = out / ".envs" / "ridge" / "bin" / "python"
    assert env_python.exists()
    # The run could only import tracker inside the venv through the parent-environment link.
    assert list((out / ".envs" / "ridge").rglob("_tracker_parent.pth"))
    manager = tracker.connect(tmp_path / "s")
    assert objects.get_exp(manager, experiment_name="ridge", create=False).list_recorders()
