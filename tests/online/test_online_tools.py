"""Collectors, groups and ensembles, online tags with their history, and the pred/label
updaters, on synthetic data against real stores."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest

import tracker
from tests.online.tasks import synthetic_task
from tracker import Experiment, R
from tracker.online.model.ens import (
    AverageEnsemble,
    Group,
    RollingEnsemble,
    RollingGroup,
    SingleKeyEnsemble,
)
from tracker.online.model.train import task_train
from tracker.online.utils import init_instance_by_config
from tracker.online.workflow.online.update import LabelUpdater, PredUpdater
from tracker.online.workflow.online.utils import OFFLINE_TAG, ONLINE_KEY, ONLINE_TAG, OnlineToolR
from tracker.online.workflow.task.collect import (
    ART_KEY_RAW,
    Collector,
    MergeCollector,
    RecorderCollector,
)

INSTRUMENTS = ["A", "B", "C"]


def pred(dates, values=None, instruments=INSTRUMENTS) -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [pd.to_datetime(dates), instruments], names=["datetime", "instrument"]
    )
    if values is None:
        values = np.arange(len(index), dtype=float)
    return pd.DataFrame({"score": np.asarray(values, dtype=float)}, index=index)


def finished_run(exp_name: str, name: str, **objects) -> tracker.Recorder:
    with R.start(experiment_name=exp_name, recorder_name=name) as rec:
        if objects:
            R.save_objects(**objects)
    return rec


def rolling_key(rec: tracker.Recorder) -> tuple[str, str]:
    return ("m", rec.name)


def failed_run(exp_name: str, name: str, **objects) -> None:
    with pytest.raises(RuntimeError), R.start(experiment_name=exp_name, recorder_name=name):
        R.save_objects(**objects)
        raise RuntimeError("boom")


# ------------------------------------------------------------------------------ collectors


@pytest.fixture
def collect_store(tmp_path):
    tracker.init(tmp_path / "s")
    old = finished_run("c", "old", **{"pred.pkl": pred(["2021-01-04"], [1, 2, 3])})
    new = finished_run("c", "new", **{"pred.pkl": pred(["2021-01-05"], [4, 5, 6])})
    failed_run("c", "failed", **{"pred.pkl": pred(["2021-01-06"])})
    empty = finished_run("c", "no-pred")
    return old, new, empty


def test_recorder_collector_finished_runs_by_id_and_skips_missing(collect_store, caplog):
    old, new, empty = collect_store
    with caplog.at_level(logging.INFO, logger="tracker.online.workflow.task.collect"):
        got = RecorderCollector("c")()
    assert set(got) == {"pred"}
    assert set(got["pred"]) == {old.id, new.id}  # not FAILED, not the run without pred.pkl
    pd.testing.assert_frame_equal(got["pred"][new.id], new.load_object("pred.pkl"))
    assert any(empty.id in r.getMessage() and "pred.pkl" in r.getMessage() for r in caplog.records)

    every = RecorderCollector("c", status=None)()["pred"]
    assert len(every) == 3
    with pytest.raises(tracker.LoadObjectError, match="pred.pkl"):
        RecorderCollector("c").collect(only_exist=False)


def test_recorder_collector_filters_status_in_the_database(collect_store, monkeypatch):
    """The statuses and the caller's filter_string narrow the query itself: runs of another
    status never come back from the database (Qlib PR #512), whatever the filter's wording."""
    _, new, _ = collect_store
    with pytest.raises(KeyboardInterrupt), R.start(experiment_name="c", recorder_name="killed"):
        R.save_objects(**{"pred.pkl": pred(["2021-01-07"])})
        raise KeyboardInterrupt
    listed: list[list[tracker.Recorder]] = []
    original = Experiment.list_recorders

    def spy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        listed.append(list(result.values()) if isinstance(result, dict) else list(result))
        return result

    monkeypatch.setattr(Experiment, "list_recorders", spy)
    kwargs = {"filter_string": "run_name != 'old'"}
    collector = RecorderCollector("c", list_kwargs=kwargs, status={"finished", "KILLED"})
    got = collector()["pred"]
    assert [sorted(r.name for r in recs) for recs in listed] == [["killed", "new", "no-pred"]]
    killed = next(r for r in listed[0] if r.name == "killed")
    assert set(got) == {new.id, killed.id}
    assert kwargs == {"filter_string": "run_name != 'old'"}  # the caller's dict is untouched


def test_recorder_collector_keys_filters_raw_and_sources(collect_store):
    old, new, _ = collect_store
    exp = R.get_exp(experiment_name="c", create=False)
    by_name = RecorderCollector(exp, rec_key_func=lambda r: r.name)()
    assert set(by_name["pred"]) == {"old", "new"}

    only_new = RecorderCollector("c", rec_filter_func=lambda r: r.name == "new")()
    assert list(only_new["pred"]) == [new.id]

    raw = RecorderCollector("c", artifacts_path={"pred": "pred.pkl", ART_KEY_RAW: ""})()
    assert raw[ART_KEY_RAW][old.id] == old and len(raw[ART_KEY_RAW]) == 3

    # A callable may return Experiments or Recorders (filtered by status in Python).
    assert set(RecorderCollector(lambda: [exp])()["pred"]) == {old.id, new.id}
    assert set(RecorderCollector(lambda: [old, new])()["pred"]) == {old.id, new.id}
    assert RecorderCollector(lambda: exp).get_exp_name() is None

    # Same key for two recorders: the newest run wins.
    same = RecorderCollector("c", rec_key_func=lambda r: "k")()["pred"]
    pd.testing.assert_frame_equal(same["k"], new.load_object("pred.pkl"))

    # An Experiment is pickled as its store location and name.
    collector = RecorderCollector(exp, process_list=[RollingGroup()], rec_key_func=rolling_key)
    restored = pickle.loads(pickle.dumps(collector))
    assert restored.get_exp_name() == "c"
    assert set(restored()["pred"]) == {("m",)}
    assert dates_of(restored()["pred"][("m",)]).nunique() == 2

    with pytest.raises(tracker.InvalidInputError, match="'label'"):
        RecorderCollector("c").collect(artifacts_key="label")


def test_recorder_collector_missing_experiment_is_not_created(tmp_path):
    tracker.init(tmp_path / "s")
    collector = RecorderCollector("nope")
    assert collector.get_exp_name() == "nope"
    with pytest.raises(tracker.ExperimentNotFound):
        collector()
    assert "nope" not in R.list_experiments()


def test_merge_collector_and_process_list():
    class Fixed(Collector):
        def __init__(self, data, process_list=[]):  # noqa: B006 - Qlib's signature
            super().__init__(process_list)
            self.data = data

        def collect(self):
            return dict(self.data)

    a, b = Fixed({"pred": 1}), Fixed({"pred": 2, "label": 3}, process_list=lambda v: v * 10)
    assert MergeCollector({"a": a, "b": b})() == {
        ("a", "pred"): 1,
        ("b", "pred"): 20,
        ("b", "label"): 30,
    }
    merged = MergeCollector({"a": a}, process_list=[str], merge_func=lambda k, i: f"{k}/{i}")
    assert merged() == {"a/pred": "1"}
    with pytest.raises(tracker.InvalidInputError, match="not callable"):
        Collector.process_collect({"x": 1}, [42])


# ---------------------------------------------------------------------- group and ensemble


def test_rolling_group_later_model_owns_overlapping_dates():
    early = pred(pd.bdate_range("2021-01-04", periods=5), values=1.0 + np.zeros(15))
    # The later model starts on the 4th date and lacks instrument C on its first date.
    late = pred(pd.bdate_range("2021-01-07", periods=5), values=2.0 + np.zeros(15))
    late = late.drop(index=(pd.Timestamp("2021-01-07"), "C"))
    collected = {
        ("Ridge", ("2021-01-07", "2021-01-13")): late,
        ("Ridge", ("2021-01-04", "2021-01-08")): early,
        ("LGB", ("2021-01-04", "2021-01-08")): early * 3,
    }
    out = RollingGroup()(collected)
    assert set(out) == {("Ridge",), ("LGB",)}
    ridge = out[("Ridge",)]
    assert not ridge.index.duplicated().any() and ridge.index.is_monotonic_increasing
    dates = ridge.index.get_level_values("datetime")
    assert dates.nunique() == 8
    per_day = ridge["score"].groupby(level="datetime").agg(["min", "max", "size"])
    assert (per_day["min"] == per_day["max"]).all()  # no date mixes two models
    assert (per_day.loc[:"2021-01-06", "max"] == 1.0).all()
    assert (per_day.loc["2021-01-07":, "max"] == 2.0).all()
    # Qlib kept the early model's C on 2021-01-07; the whole date is the late model's here.
    assert per_day.loc["2021-01-07", "size"] == 2
    pd.testing.assert_frame_equal(out[("LGB",)], early * 3)

    # Same start: the later key wins.
    tie = RollingEnsemble()({("s", 1): early, ("s", 2): early + 5})
    assert (tie["score"] == early["score"] + 5).all()
    with pytest.raises(TypeError, match="not a non-empty tuple"):
        RollingGroup()({"flat": early})


def test_average_ensemble_zscores_per_date_then_averages():
    d1, d2 = pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-05")
    m1 = pred([d1, d2], [1, 2, 3, 0, 0, 6])
    m2 = pred([d1, d2], [10, 30, 20, 5, 1, 3]).score  # a Series works too
    out = AverageEnsemble()({"m1": m1, "nested": {"m2": m2}})
    # d1: m1 -> (-1, 0, 1); m2 -> (-1, 1, 0).  d2: m1 (0,0,6): mean 2, std sqrt(12)
    # -> (-2, -2, 4)/sqrt(12); m2 (5,1,3): mean 3, std 2 -> (1, -1, 0).
    s12 = np.sqrt(12)
    expected = [-1.0, 0.5, 0.5, (-2 / s12 + 1) / 2, (-2 / s12 - 1) / 2, 4 / s12 / 2]
    assert isinstance(out, pd.Series) and out.name == "score"
    np.testing.assert_allclose(out.to_numpy(), expected)
    assert list(out.index) == list(m1.index)

    # One model: returned as it is (Qlib z-scored it, quirk 12).
    single = AverageEnsemble()({("s", "pred"): {("Ridge",): m1}})
    np.testing.assert_array_equal(single.to_numpy(), m1["score"].to_numpy())
    assert single.index.equals(m1.index)


def test_single_key_ensemble_and_group_basics():
    data = {"a": {"b": 1}, "c": {"d": 2, "e": {"f": 3}}}
    assert SingleKeyEnsemble()(data) == {"a": 1, "c": {"d": 2, "e": 3}}
    assert data["a"] == {"b": 1}  # not modified
    assert SingleKeyEnsemble()({"x": {"y": 4}}) == 4

    group = Group(group_func=lambda d: {k % 2: {k: v} for k, v in d.items()}, ens=len)
    assert group({1: "a", 2: "b"}) == group({1: "a", 2: "b"}, n_jobs=2) == {1: 1, 0: 1}
    with pytest.raises(NotImplementedError, match="group_func"):
        Group()({})


# --------------------------------------------------------------------------------- online tags


def test_online_tags_reset_and_history(tmp_path):
    tracker.init(tmp_path / "s")
    a, b, c = (finished_run("on", n) for n in "abc")
    tool = OnlineToolR("on")
    assert tool.get_online_tag(a) == OFFLINE_TAG  # untagged means offline

    tool.set_online_tag(ONLINE_TAG, a)
    assert tool.get_online_tag(a) == ONLINE_TAG and a.list_tags()[ONLINE_KEY] == "online"
    tool.reset_online_tag([b, c])
    assert {r.id for r in tool.online_models()} == {b.id, c.id}
    assert tool.get_online_tag(a) == OFFLINE_TAG
    tool.set_online_tag(ONLINE_TAG, c)  # already online: no history entry
    tool.reset_online_tag(c)
    tool.set_online_tag(ONLINE_TAG, [a])

    history = tool.online_history()
    assert list(history.columns[:4]) == ["recorder_id", "name", "online_from", "online_to"]
    rows = {(r.name, pd.isna(r.online_to)) for r in history.itertuples()}
    assert rows == {("a", False), ("b", False), ("c", True), ("a", True)}
    assert len(history) == 4
    assert (history["online_from"].diff().dropna() >= pd.Timedelta(0)).all()
    closed = history.dropna(subset=["online_to"])
    assert (closed["online_to"] >= closed["online_from"]).all()
    a_rows = history[history["name"] == "a"]
    assert a_rows["online_from"].iloc[1] >= a_rows["online_to"].iloc[0]
    assert history["online_by"].str.contains(":").all()

    events = tool.online_events()
    assert list(events["status"]).count(ONLINE_TAG) == 4 and len(events) == 6
    assert events["time"].is_monotonic_increasing and events["pid"].notna().all()

    # History and state survive a new store connection (they are in the store).
    tracker.store.clear_cache()
    tracker.init(tmp_path / "s")
    assert len(OnlineToolR().online_history("on")) == 4
    assert {r.name for r in OnlineToolR().online_models("on")} == {"a", "c"}


def test_online_tool_errors_and_untracked_changes(tmp_path):
    tracker.init(tmp_path / "s")
    a = finished_run("on", "a")
    tool = OnlineToolR()
    with pytest.raises(tracker.InvalidInputError, match="'live'"):
        tool.set_online_tag("live", a)
    with pytest.raises(tracker.InvalidInputError, match="exp_name"):
        tool.online_models()
    with pytest.raises(tracker.ExperimentNotFound):
        tool.online_models("missing")
    tool.reset_online_tag(a)  # the experiment is taken from the recorder
    assert tool.online_models("on") == [a]
    # A tag set behind the tool's back still shows as an online period (start unknown).
    b = finished_run("on", "b")
    b.set_tags(**{ONLINE_KEY: ONLINE_TAG})
    history = tool.online_history("on").set_index("name")
    assert pd.isna(history.loc["b", "online_from"]) and pd.notna(history.loc["a", "online_from"])


# ------------------------------------------------------------------------------------ updaters

DATA = {"synthetic": {"n_instruments": 30, "n_days": 380, "seed": 1, "signal": 0.1}}
LAST = pd.Timestamp("2021-06-15")  # the 380th business day from 2020-01-01
TEST_END = pd.Timestamp("2021-04-20")  # 40 business days before LAST


def make_task() -> dict:
    return synthetic_task(
        {"train": ["2020-01-01", "2020-12-31"], "test": ["2021-01-01", str(TEST_END.date())]},
        data=DATA,
        model_kwargs={"alpha": 1.0},
    )


def direct(start, end, what: str = "pred", model=None) -> pd.DataFrame:
    """Predictions (or labels) built without the updater: a fresh dataset on the same data."""
    config = make_task()["dataset"]
    config["kwargs"]["segments"] = {"test": [start, end]}
    dataset = init_instance_by_config(config)
    if what == "label":
        return dataset.prepare("test", col_set="label")
    return model.predict(dataset).to_frame("score")


def dates_of(frame: pd.DataFrame) -> pd.Index:
    return frame.index.get_level_values("datetime")


@pytest.fixture
def online_run(tmp_path):
    tracker.init(tmp_path / "s")
    rec = task_train(make_task(), "upd")
    OnlineToolR("upd").reset_online_tag(rec)
    return rec


def test_update_online_pred_extends_to_the_data_and_is_idempotent(online_run):
    rec = online_run
    before = rec.load_object("pred.pkl")
    assert dates_of(before).max() == TEST_END
    OnlineToolR("upd").update_online_pred()
    after = rec.load_object("pred.pkl")
    assert dates_of(after).max() == LAST and not after.index.duplicated().any()
    pd.testing.assert_frame_equal(after[dates_of(after) <= TEST_END], before)  # untouched
    new = after[dates_of(after) > TEST_END]
    model = rec.load_object("params.pkl")
    pd.testing.assert_frame_equal(new, direct(TEST_END + pd.offsets.BDay(), None, model=model))

    assert PredUpdater(rec).update(ret_new=True) is None  # already up to date
    OnlineToolR("upd").update_online_pred()
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), after)
    # Recomputing an explicit range that is already right rewrites nothing either.
    again = PredUpdater(rec, from_date="2021-05-03").update(ret_new=True)
    pd.testing.assert_frame_equal(again, after)


def test_update_past_the_data_clips_and_a_range_is_replaced_exactly(online_run):
    rec, tool = online_run, OnlineToolR("upd")
    tool.update_online_pred(to_date=LAST + pd.Timedelta(days=10))  # must not error
    good = rec.load_object("pred.pkl")
    assert dates_of(good).max() == LAST

    # Qlib's test_update_pred: corrupt two ranges, update one of them.
    start, end = LAST - pd.Timedelta(days=20), LAST - pd.Timedelta(days=10)
    inside = (dates_of(good) >= start) & (dates_of(good) <= end)
    outside = dates_of(good) > LAST - pd.Timedelta(days=5)
    corrupt = good.copy()
    corrupt.loc[inside | outside, "score"] = 0.0
    rec.save_objects(**{"pred.pkl": corrupt})
    tool.update_online_pred(to_date=end, from_date=start)
    fixed = rec.load_object("pred.pkl")
    pd.testing.assert_frame_equal(fixed[~outside], good[~outside])
    assert (fixed.loc[outside, "score"] == 0.0).all()


def test_history_buffer_and_missing_artifacts(online_run, caplog):
    rec = online_run
    updater = PredUpdater(rec, hist_ref=5)
    first_new = pd.Timestamp("2021-04-21")
    assert updater.from_date == first_new and updater.to_date == LAST
    dataset = updater.prepare_data()
    assert dataset.handler.start_time == first_new - pd.offsets.BDay(5)
    assert dataset.segments["test"] == (first_new, LAST)
    with_buffer = updater.update(dataset=dataset, write=False, ret_new=True)
    pd.testing.assert_frame_equal(with_buffer, PredUpdater(rec).update(write=False, ret_new=True))

    other = finished_run("upd", "no-pred")
    OnlineToolR("upd").set_online_tag(ONLINE_TAG, other)
    with pytest.raises(tracker.LoadObjectError):
        PredUpdater(other)
    with caplog.at_level(logging.WARNING, logger="tracker.online.workflow.online.utils"):
        OnlineToolR("upd").update_online_pred()
    assert any(other.id in r.getMessage() for r in caplog.records)
    assert dates_of(rec.load_object("pred.pkl")).max() == LAST


def test_label_updater_follows_the_pred(online_run):
    rec = online_run
    OnlineToolR("upd").update_online_pred()
    label_before = rec.load_object("label.pkl")
    assert dates_of(label_before.dropna()).max() < dates_of(rec.load_object("pred.pkl")).max()
    LabelUpdater(rec).update()
    label = rec.load_object("label.pkl")
    assert dates_of(label).max() == LAST and list(label.columns) == ["LABEL0"]
    pd.testing.assert_frame_equal(label[dates_of(label) <= TEST_END], label_before)
    expected = direct(TEST_END + pd.offsets.BDay(), None, what="label")
    pd.testing.assert_frame_equal(label[dates_of(label) > TEST_END], expected)
    assert label.loc[LAST, "LABEL0"].isna().all()  # future prices unknown: NaN, kept
    LabelUpdater(rec).update()  # recomputes the NaN tail: nothing changes
    pd.testing.assert_frame_equal(rec.load_object("label.pkl"), label)
