"""Trainers, RollingStrategy and OnlineManager in the four modes (online or simulated, with a
trainer or a delay trainer) on a small synthetic market, and ``tracker online``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import tracker
from tests.online.tasks import synthetic_task
from tracker import R
from tracker.cli.main import cli
from tracker.online.data.loader import make_synthetic_market
from tracker.online.model.trainer import (
    STATUS_BEGIN,
    STATUS_END,
    STATUS_KEY,
    TM_ID,
    DelayTrainerR,
    DelayTrainerRM,
    TrainerR,
    TrainerRM,
)
from tracker.online.workflow.online.manager import OnlineManager
from tracker.online.workflow.online.strategy import RollingStrategy, segment_of
from tracker.online.workflow.online.utils import OnlineToolR
from tracker.online.workflow.task.gen import RollingGen
from tracker.online.workflow.task.manage import STATUS_DONE, TaskManager

SYN = {"n_instruments": 20, "n_days": 240, "seed": 3, "signal": 0.1}  # 2020-01-01 .. 2020-11-30
SEGMENTS = {
    "train": ["2020-01-01", "2020-04-30"],
    "valid": ["2020-05-01", "2020-05-29"],
    "test": ["2020-06-01", "2020-06-26"],  # 20 trading days: one window
}
STEP = 20
BEGIN, END = "2020-06-24", "2020-08-20"  # two new windows: 06-29 and 07-27 (and 08-24 later)


def make_task(data=None, test_end="2020-06-26") -> dict:
    segments = copy.deepcopy(SEGMENTS)
    segments["test"][1] = test_end
    return synthetic_task(
        segments,
        data=data,
        synthetic=SYN,
        windows=[5, 10],
        model_kwargs={"seed": 0},
        records=[{"class": "SignalRecord"}],
    )


@pytest.fixture
def store(tmp_path):
    return tracker.init(tmp_path / "s")


def test_starts(models) -> list[pd.Timestamp]:
    return sorted(segment_of(r.load_object("task"))[0] for r in models)


test_starts.__test__ = False  # type: ignore[attr-defined]


def strategy(name: str, task: dict) -> RollingStrategy:
    return RollingStrategy(name, task, RollingGen(step=STEP, rtype=RollingGen.ROLL_SD))


def dates(signals) -> pd.Index:
    return signals.index.get_level_values("datetime")


def check_run(name: str, signals, begin=BEGIN, end=END) -> None:
    exp = R.get_exp(experiment_name=name, create=False)
    recs = exp.list_recorders(rtype="list")
    starts = test_starts(recs)
    assert [f"{s:%m-%d}" for s in starts] == ["06-01", "06-29", "07-27"]
    assert all(r.list_tags()[STATUS_KEY] == STATUS_END for r in recs)
    online = OnlineToolR(name).online_models()
    assert test_starts(online) == [starts[-1]]  # the latest window only
    hist = OnlineToolR(name).online_history()
    assert len(hist) >= 3 and hist["online_to"].notna().sum() >= 2  # the set changed twice
    d = dates(signals)
    assert not signals.index.duplicated().any()
    cal = d.unique()
    assert pd.bdate_range(begin, end).isin(cal).all()  # every simulated day (once, above)
    assert cal.max() == pd.Timestamp(end)  # nothing past the manager's time


# ------------------------------------------------------------------------------ simulation


@pytest.mark.slow
@pytest.mark.parametrize("delay", [False, True], ids=["trainer", "delay-trainer"])
def test_simulate_trains_each_window_and_signals_every_day(store, delay):
    name = f"sim_{delay}"
    trainer = DelayTrainerR() if delay else TrainerR()
    manager = OnlineManager(strategy(name, make_task()), trainer, begin_time=BEGIN)
    signals = manager.simulate(end_time=END)
    check_run(name, signals)
    assert manager.status == OnlineManager.STATUS_ONLINE
    if delay:  # the same signals as training on the way
        other = OnlineManager(strategy("sim_ref", make_task()), TrainerR(), begin_time=BEGIN)
        pd.testing.assert_series_equal(signals, other.simulate(end_time=END))


def test_prepare_signals_appends_without_duplicating_the_boundary(store):
    manager = OnlineManager(strategy("sig", make_task()), begin_time="2020-06-10")
    manager.first_train()
    first = manager.prepare_signals()
    assert dates(first).max() == pd.Timestamp("2020-06-10")
    manager.cur_time = pd.Timestamp("2020-06-20")
    new = manager.prepare_signals()
    assert dates(new).min() == pd.Timestamp("2020-06-11")
    assert not manager.get_signals().index.duplicated().any()
    again = manager.prepare_signals()  # nothing new
    assert again.empty and len(manager.get_signals()) == len(first) + len(new)
    full = manager.prepare_signals(over_write=True)
    pd.testing.assert_series_equal(full, manager.get_signals())


# --------------------------------------------------------------------------------- online


def online_days(tmp_path: Path, name: str, trainer, reload: bool) -> pd.Series:
    """Data arriving day by day in a Parquet file; a routine each day, as a cron job would."""
    full = make_synthetic_market(**SYN)
    path = tmp_path / f"{name}.parquet"

    def arrive(day: str | pd.Timestamp) -> None:
        full[full.index.get_level_values("datetime") <= day].to_parquet(path)

    arrive(BEGIN)
    task = make_task(str(path), test_end=None)
    manager = OnlineManager(strategy(name, task), trainer)
    assert manager.cur_time == pd.Timestamp(BEGIN)
    manager.first_train()
    saved = tmp_path / f"{name}.pkl"
    for day in pd.bdate_range(BEGIN, END)[1:]:
        arrive(day)
        if reload:
            manager.to_pickle(saved)
            manager = OnlineManager.load(saved)
        manager.routine()
        assert manager.cur_time == day
    return manager.get_signals()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [False, True], ids=["trainer", "delay-trainer"])
def test_online_routine_per_day(store, tmp_path, delay):
    name = f"online_{delay}"
    trainer = DelayTrainerR() if delay else TrainerR()
    signals = online_days(tmp_path, name, trainer, reload=delay)
    begin = pd.bdate_range(BEGIN, END)[1]  # signals start with the first routine
    check_run(name, signals, begin=begin)
    for rec in OnlineToolR(name).online_models():  # predictions kept up to date
        assert dates(rec.load_object("pred.pkl")).max() == pd.Timestamp(END)
    if delay:
        ref = online_days(tmp_path, "online_ref", TrainerR(), reload=False)
        pd.testing.assert_series_equal(signals, ref)


# ------------------------------------------------------------------------------- trainers


def test_trainer_r_order_tags_and_edge_cases(store):
    tasks = [make_task(test_end=e) for e in ("2020-06-26", "2020-06-19")]
    trainer = TrainerR("tr")
    assert trainer.train([]) == [] and not trainer.is_delay() and not trainer.has_worker()
    recs = trainer.train(tasks)
    assert [segment_of(r.load_object("task"))[1] for r in recs] == [
        pd.Timestamp("2020-06-26"),
        pd.Timestamp("2020-06-19"),
    ]
    assert all(r.list_tags()[STATUS_KEY] == STATUS_BEGIN for r in recs)
    (one,) = trainer(tasks[0])  # a single dict; __call__ = end_train(train())
    assert one.list_tags()[STATUS_KEY] == STATUS_END and "pred.pkl" in one.list_artifacts()
    with pytest.raises(NotImplementedError):
        trainer.worker()
    with pytest.raises(tracker.InvalidInputError, match="experiment"):
        TrainerR().train(tasks)


def test_delay_trainer_r_trains_in_end_train_and_skips_ended(store):
    trainer = DelayTrainerR("dtr")
    recs = trainer.train([make_task()])
    assert trainer.is_delay() and set(recs[0].list_artifacts()) == {"task"}
    ended = trainer.end_train(recs)
    assert ended[0].id == recs[0].id and "pred.pkl" in ended[0].list_artifacts()
    assert trainer.end_train(ended, end_train_func=_boom)[0].id == recs[0].id  # skipped


def _boom(*args, **kwargs):
    raise AssertionError("must not be called for ended recorders")


@pytest.mark.parametrize("delay", [False, True], ids=["TrainerRM", "DelayTrainerRM"])
def test_rm_trainers_on_the_sql_queue(store, delay):
    tasks = [make_task(test_end=e) for e in ("2020-06-26", "2020-06-19", "2020-06-12")]
    trainer = DelayTrainerRM("rm", "pool") if delay else TrainerRM("rm", "pool")
    assert trainer.has_worker() and trainer.train([]) == []
    recs = trainer.train(tasks)
    tm = TaskManager("pool")
    ids = [int(r.list_tags()[TM_ID]) for r in recs]
    assert [tm.re_query(i)["def"] for i in ids] == tasks  # input order
    recs = trainer.end_train(recs)
    assert [int(r.list_tags()[TM_ID]) for r in recs] == ids
    assert all(r.list_tags()[STATUS_KEY] == STATUS_END for r in recs)
    assert all("pred.pkl" in r.list_artifacts() for r in recs)
    assert tm.task_stat() == {STATUS_DONE: 3}
    again = trainer.end_train(trainer.train(tasks))  # deduplicated: nothing trained again
    assert [r.id for r in again] == [r.id for r in recs]
    assert len(R.list_recorders(experiment_name="rm")) == 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["DelayTrainerR", "TrainerRM", "DelayTrainerRM"])
def test_two_worker_processes(store, kind):
    tasks = [make_task(test_end=e) for e in ("2020-06-26", "2020-06-19", "2020-06-12")]
    trainer = {
        "DelayTrainerR": lambda: DelayTrainerR("par", n_workers=2),
        "TrainerRM": lambda: TrainerRM("par", "par-pool", n_workers=2),
        "DelayTrainerRM": lambda: DelayTrainerRM("par", "par-pool", n_workers=2),
    }[kind]()
    recs = trainer.end_train(trainer.train(tasks))
    assert [segment_of(r.load_object("task"))[1] for r in recs] == [
        pd.Timestamp(t["dataset"]["kwargs"]["segments"]["test"][1]) for t in tasks
    ]
    assert all(r.refresh().status == "FINISHED" for r in recs)
    assert all("pred.pkl" in r.list_artifacts() for r in recs)
    task_ids = {r.list_tags().get("tracker.task_id") for r in recs}
    assert kind == "DelayTrainerR" or len(task_ids) == 3  # every run came from the queue
    if kind == "TrainerRM":  # runs made by the workers record a command line without the store
        assert {r.list_params()["cmd-sys.argv"] for r in recs} == {"-c"}


@pytest.mark.slow
def test_simulate_with_rm_delay_trainer_matches(store):
    manager = OnlineManager(
        strategy("sim_rm", make_task()), DelayTrainerRM("sim_rm"), begin_time=BEGIN
    )
    signals = manager.simulate(end_time=END)
    check_run("sim_rm", signals)
    ref = OnlineManager(strategy("sim_ref2", make_task()), TrainerR(), begin_time=BEGIN)
    pd.testing.assert_series_equal(signals, ref.simulate(end_time=END))


# ------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_tracker_online_cli(store, tmp_path):
    online_days(tmp_path, "op", TrainerR(), reload=False)
    TaskManager("op-pool").create_task([{"n": 1}])
    uri = ["--uri", str(tmp_path / "s")]
    result = CliRunner().invoke(cli, [*uri, "online", "op", "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    (model,) = state["online"]
    assert model["test"] == ["2020-07-27", None] and model["model"] == "RidgeModel"
    assert model["pred_end"] == model["data_end"] == "2020-08-20" and not model["stale"]
    assert state["pools"]["op-pool"]["waiting"] == 1
    # New data arrives without a routine: the predictions are flagged stale.
    full = make_synthetic_market(**SYN)
    full[full.index.get_level_values("datetime") <= "2020-08-25"].to_parquet(
        tmp_path / "op.parquet"
    )
    text = CliRunner().invoke(cli, [*uri, "online", "op"])
    assert text.exit_code == 0 and "STALE" in text.stdout and "task pool op-pool" in text.stdout
    missing = CliRunner().invoke(cli, [*uri, "online", "nope"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
