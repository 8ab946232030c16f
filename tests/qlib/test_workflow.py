"""Qlib's by-code workflow (``examples/workflow_by_code.py``: Alpha158 → LGBModel →
SignalRecord, SigAnaRecord, PortAnaRecord with Qlib's own backtest) on tracker's store, every
value read back through Qlib's ``R`` and through ``tracker show --json``."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from qlib.utils import flatten_dict, init_instance_by_config
from qlib.workflow import R
from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord, SignalRecord

import tracker
from tests.qlib.tasks import lgb_task, port_analysis_config, tracker_cli

PORT_METRICS = [
    f"1day.excess_return_{cost}_cost.{m}"
    for cost in ("with", "without")
    for m in ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
] + ["1day.ffr", "1day.pa", "1day.pos"]
PORT_FILES = [
    f"portfolio_analysis/{name}.pkl"
    for name in (
        "indicator_analysis_1day",
        "indicators_normal_1day",
        "indicators_normal_1day_obj",
        "port_analysis_1day",
        "positions_normal_1day",
        "report_normal_1day",
    )
]


def train(task: dict) -> tuple:
    model = init_instance_by_config(task["model"])
    dataset = init_instance_by_config(task["dataset"])
    model.fit(dataset)
    return model, dataset


def test_workflow_by_code_on_tracker(qlib_store):
    task = lgb_task()
    with R.start(experiment_name="workflow"):
        R.log_params(**flatten_dict(task))
        model, dataset = train(task)
        R.save_objects(**{"params.pkl": model})
        recorder = R.get_recorder()
        SignalRecord(model, dataset, recorder).generate()
        SigAnaRecord(recorder).generate()
        PortAnaRecord(recorder, port_analysis_config(), "day").generate()
        run_id = recorder.id

    # Through Qlib's R, with no active run (test_all_pipeline's pattern).
    rec = R.get_recorder(recorder_id=run_id, experiment_name="workflow")
    assert rec.status == "FINISHED"
    metrics = rec.list_metrics()
    for key in ["IC", "ICIR", "Rank IC", "Rank ICIR", *PORT_METRICS]:
        assert key in metrics and not math.isnan(metrics[key]), key
    assert metrics["l2.valid"] > 0  # LGBModel's own R.log_metrics during fit
    pred = rec.load_object("pred.pkl")
    expected = model.predict(dataset)
    pd.testing.assert_series_equal(pred["score"], expected, check_names=False)
    report = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    with_cost = report.loc[("excess_return_with_cost", "annualized_return"), "risk"]
    assert with_cost == pytest.approx(metrics["1day.excess_return_with_cost.annualized_return"])
    assert rec.load_object("params.pkl").predict(dataset).equals(expected)
    assert set(rec.list_artifacts()) >= {"pred.pkl", "label.pkl", "params.pkl", "sig_analysis"}
    listed = set(rec.list_artifacts("portfolio_analysis"))
    assert listed == set(PORT_FILES)
    assert rec.list_params()["model.class"] == "LGBModel"

    # Through tracker's CLI, in another process.
    shown = tracker_cli(qlib_store, "show", run_id)
    assert shown["status"] == "FINISHED" and shown["experiment"] == "workflow"
    assert shown["metrics"] == pytest.approx(metrics)
    assert shown["params"] == rec.list_params()
    assert len(shown["metric_history"]["l2.valid"]) > 1  # one point per boosting round
    assert {a["path"] for a in shown["artifacts"]} >= {"pred.pkl", *PORT_FILES}
    listed_runs = tracker_cli(qlib_store, "ls", "workflow")
    assert [r["run_id"] for r in listed_runs] == [run_id]


def test_a_finished_recorder_is_analysed_later(qlib_store):
    """Qlib's test_all_pipeline: train in one run, backtest later on the ended recorder."""
    task = lgb_task()
    with R.start(experiment_name="workflow"):
        model, dataset = train(task)
        R.save_objects(trained_model=model)
        recorder = R.get_recorder()
        SignalRecord(model, dataset, recorder).generate()
        run_id = recorder.id
    with R.uri_context(qlib_store):
        later = R.get_recorder(experiment_name="workflow", recorder_id=run_id)
        later.load_object("trained_model")
        SigAnaRecord(later).generate()
        PortAnaRecord(later, port_analysis_config(), risk_analysis_freq="day").generate()
    run = tracker.connect(qlib_store).get_run(run_id)
    assert run.info.status.value == "FINISHED"
    assert {"IC", "1day.excess_return_with_cost.annualized_return"} <= set(run.data.metrics)
