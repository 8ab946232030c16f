"""Qlib's trainers, collectors and online serving, unmodified, on tracker's store:
``task_train``, ``TrainerR``, ``DelayTrainerR``, ``RecorderCollector`` + ``RollingGroup``,
``OnlineToolR`` and ``OnlineManager`` + ``RollingStrategy`` in simulation."""

from __future__ import annotations

import pandas as pd
import pytest
from qlib.model.ens.group import RollingGroup
from qlib.model.trainer import DelayTrainerR, TrainerR, task_train
from qlib.workflow import R
from qlib.workflow.online.manager import OnlineManager
from qlib.workflow.online.strategy import RollingStrategy
from qlib.workflow.online.utils import OnlineToolR
from qlib.workflow.task.collect import RecorderCollector
from qlib.workflow.task.gen import RollingGen

import tracker
from tests.qlib.market import DAYS
from tests.qlib.tasks import lgb_task
from tracker.qlib import TrackerExperiment, TrackerRecorder

# Three rolling windows of 20 trading days each: tests from 2020-08-03, 08-31 and 09-28.
ROLLING = {
    "train": ("2020-01-01", "2020-05-29"),
    "valid": ("2020-06-01", "2020-07-31"),
    "test": ("2020-08-03", "2020-10-23"),
}
FIRST_WINDOW = {**ROLLING, "test": ("2020-08-03", "2020-08-28")}
TEST_STARTS = ["2020-08-03", "2020-08-31", "2020-09-28"]
STEP = 20


def rolling_tasks() -> list[dict]:
    return RollingGen(step=STEP, rtype=RollingGen.ROLL_SD).generate(lgb_task(ROLLING))


def window_start(rec: TrackerRecorder) -> pd.Timestamp:
    return pd.Timestamp(rec.load_object("task")["dataset"]["kwargs"]["segments"]["test"][0])


def pred_dates(pred: pd.DataFrame) -> pd.DatetimeIndex:
    return pred.index.get_level_values("datetime").unique().sort_values()


def test_task_train_runs_a_task_in_one_recorder(qlib_store):
    task = lgb_task(FIRST_WINDOW)
    rec = task_train(task, experiment_name="task_train")
    assert isinstance(rec, TrackerRecorder) and rec.status == "FINISHED"
    assert rec.load_object("task") == task
    assert set(rec.list_artifacts()) >= {"task", "params.pkl", "dataset", "pred.pkl", "label.pkl"}
    assert set(rec.list_artifacts("sig_analysis")) == {
        "sig_analysis/ic.pkl",
        "sig_analysis/ric.pkl",
    }
    run = tracker.connect(qlib_store).get_run(rec.id)
    assert run.info.status.value == "FINISHED"
    assert run.data.params["model.class"] == "LGBModel" and "hostname" in run.data.tags
    assert {"IC", "Rank IC"} <= set(run.data.metrics)
    assert pred_dates(rec.load_object("pred.pkl"))[[0, -1]].strftime("%Y-%m-%d").tolist() == [
        "2020-08-03",
        "2020-08-28",
    ]


def test_trainer_r_rolling_collector_and_online_tool(qlib_store):
    tasks = rolling_tasks()
    assert [t["dataset"]["kwargs"]["segments"]["test"][0] for t in tasks] == [
        pd.Timestamp(d) for d in TEST_STARTS
    ]
    trainer = TrainerR(experiment_name="rolling")
    recs = trainer.train(tasks)
    assert [r.list_tags()["train_status"] for r in recs] == ["begin_task_train"] * 3
    recs = trainer.end_train(recs)
    assert [r.list_tags()["train_status"] for r in recs] == ["end_task_train"] * 3

    # RecorderCollector asserts a Qlib Experiment; by name it goes through R.get_exp.
    exp = R.get_exp(experiment_name="rolling")
    assert isinstance(exp, TrackerExperiment)
    for experiment in ("rolling", exp):
        collector = RecorderCollector(
            experiment=experiment,
            process_list=RollingGroup(),
            rec_key_func=lambda rec: (rec.load_object("task")["model"]["class"], window_start(rec)),
            artifacts_key="pred",
        )
        merged = collector()["pred"][("LGBModel",)]
        parts = [r.load_object("pred.pkl") for r in sorted(recs, key=window_start)]
        pd.testing.assert_frame_equal(merged.sort_index(), pd.concat(parts).sort_index())
        assert pred_dates(merged)[0] == pd.Timestamp(TEST_STARTS[0])
        assert not merged.index.duplicated().any()

    # OnlineToolR: online tags, then extend the online model's predictions to the last day.
    tool = OnlineToolR("rolling")
    newest = max(recs, key=window_start)
    tool.reset_online_tag(newest)
    assert tool.online_models() == [newest]
    assert [tool.get_online_tag(r) for r in recs if r != newest] == ["offline", "offline"]
    before = newest.load_object("pred.pkl")
    tool.update_online_pred()
    after = R.get_recorder(recorder_id=newest.id, experiment_name="rolling").load_object("pred.pkl")
    assert pred_dates(after)[-1] == DAYS[-1] and len(after) > len(before)
    pd.testing.assert_frame_equal(after.loc[before.index], before)
    assert newest.status == "FINISHED"


def test_delay_trainer_r_resumes_the_same_recorders(qlib_store):
    tasks = rolling_tasks()[:2]
    trainer = DelayTrainerR(experiment_name="delay")
    begun = trainer.train(tasks)
    assert all("pred.pkl" not in r.list_artifacts() for r in begun)
    assert all(r.status == "FINISHED" for r in begun)
    ended = trainer.end_train(begun)
    assert [r.id for r in ended] == [r.id for r in begun]
    exp = R.get_exp(experiment_name="delay")
    assert set(exp.list_recorders()) == {r.id for r in begun}  # resumed, not new runs
    store = tracker.connect(qlib_store)
    for rec in ended:
        run = store.get_run(rec.id)
        assert (
            run.info.status.value == "FINISHED"
            and run.data.tags["train_status"] == "end_task_train"
        )
        assert "IC" in run.data.metrics and "pred.pkl" in rec.list_artifacts()


@pytest.mark.parametrize("trainer_cls", [TrainerR, DelayTrainerR])
def test_online_manager_rolling_simulation(qlib_store, trainer_cls):
    """Qlib's rolling_online_management: one window trained first, two more as the simulated
    days reach them; signals cover all three test windows. (The simulation starts on the first
    window's last day: Qlib's history keeps one entry per day, so a window trained on the
    start day itself would replace the first one, which DelayTrainerR then never trains.)"""
    strategy = RollingStrategy(
        "online", lgb_task(FIRST_WINDOW), RollingGen(step=STEP, rtype=RollingGen.ROLL_SD)
    )
    manager = OnlineManager(strategy, trainer=trainer_cls(), begin_time="2020-08-28")
    signals = manager.simulate(end_time="2020-10-09")

    recs = list(R.list_recorders(experiment_name="online").values())
    assert sorted(window_start(r) for r in recs) == [pd.Timestamp(d) for d in TEST_STARTS]
    assert all(r.status == "FINISHED" for r in recs)
    online = strategy.tool.online_models()
    assert [window_start(r) for r in online] == [pd.Timestamp(TEST_STARTS[-1])]
    dates = pred_dates(signals)
    assert dates[0] == pd.Timestamp(TEST_STARTS[0]) and dates[-1] == pd.Timestamp("2020-10-23")
    store = tracker.connect(qlib_store)
    for rec in recs:
        tags = store.get_run(rec.id).data.tags
        assert tags["train_status"] == "end_task_train"
        assert tags["online_status"] == ("online" if rec in online else "offline")
