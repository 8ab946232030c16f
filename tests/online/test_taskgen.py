"""Trading calendar, TimeAdjuster and rolling task generation, checked against a calendar
worked out by hand (expected segments are written out literally)."""

from __future__ import annotations

import copy
import pickle

import pandas as pd
import pytest

from tracker.errors import InvalidInputError
from tracker.online.data.dataset import Dataset
from tracker.online.data.features import FeatureHandler
from tracker.online.data.loader import make_synthetic_market, write_synthetic_market
from tracker.online.workflow.task.gen import (
    ROLL_EX,
    ROLL_SD,
    RollingGen,
    TaskGen,
    handler_mod,
    task_generator,
    trunc_segments,
)
from tracker.online.workflow.task.utils import CalendarRangeError, TimeAdjuster, trading_calendar

# 30 trading days of January/February 2024 (US: no 2024-01-01 New Year, no 2024-01-15 MLK day).
# idx:   0      1      2      3   |  4      5      6      7      8   |  9     10     11     12
CAL = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
CAL += ["2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12"]
CAL += ["2024-01-16", "2024-01-17", "2024-01-18", "2024-01-19"]
# idx:  13     14     15     16     17   | 18     19     20     21     22
CAL += ["2024-01-22", "2024-01-23", "2024-01-24", "2024-01-25", "2024-01-26"]
CAL += ["2024-01-29", "2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"]
# idx:  23     24     25     26     27   | 28     29 (last data date)
CAL += ["2024-02-05", "2024-02-06", "2024-02-07", "2024-02-08", "2024-02-09"]
CAL += ["2024-02-12", "2024-02-13"]
# Past the data (future business days): 30 02-14, 31 02-15, 32 02-16, 33 02-19, 34 02-20.


def d(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)


def fmt(seg) -> tuple[str | None, str | None]:
    return tuple(None if t is None else f"{pd.Timestamp(t):%Y-%m-%d}" for t in seg)


def segs(task: dict) -> dict[str, tuple[str | None, str | None]]:
    return {k: fmt(v) for k, v in task["dataset"]["kwargs"]["segments"].items()}


def handler_end(task: dict) -> str | None:
    end = task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]
    return None if end is None else f"{pd.Timestamp(end):%Y-%m-%d}"


def make_task(test: tuple, handler_end_time="2024-01-26") -> dict:
    return {
        "model": {"class": "LGBModel", "module_path": "tracker.online.model.base"},
        "dataset": {
            "class": "Dataset",
            "kwargs": {
                "handler": {"class": "FeatureHandler", "kwargs": {"end_time": handler_end_time}},
                "segments": {
                    "train": ("2024-01-01", "2024-01-12"),
                    "valid": ("2024-01-13", "2024-01-19"),
                    "test": test,
                },
            },
        },
        "record": [],
    }


@pytest.fixture
def ta() -> TimeAdjuster:
    return TimeAdjuster(CAL)


# --- calendar --------------------------------------------------------------------------------


def test_calendar_from_frames_files_handlers_and_tasks(tmp_path):
    dates = pd.DatetimeIndex(["2024-01-03", "2024-01-02", "2024-01-03", "2024-01-05"])
    frame = pd.DataFrame(
        {"close": [1.0, 2.0, 3.0, 4.0]},
        index=pd.MultiIndex.from_arrays([dates, list("abcd")], names=["datetime", "instrument"]),
    )
    assert list(trading_calendar(frame).strftime("%m-%d")) == ["01-02", "01-03", "01-05"]
    assert trading_calendar(frame.reset_index()).equals(trading_calendar(frame))
    assert list(trading_calendar(["2024-01-05", "2024-01-02"]).day) == [2, 5]

    synth = {"synthetic": {"n_instruments": 3, "n_days": 30, "start": "2024-01-01"}}
    expected = pd.bdate_range("2024-01-01", periods=30)
    path = write_synthetic_market(tmp_path / "m.parquet", **synth["synthetic"])
    handler = {"class": "FeatureHandler", "kwargs": {"data": synth}}
    sources = {
        "synthetic": synth,
        "file": path,
        "file-str": str(path),
        "handler-config": handler,
        "dataset-config": {"class": "Dataset", "kwargs": {"handler": handler}},
        "task": {"dataset": {"kwargs": {"handler": handler}}},
        "handler": FeatureHandler(make_synthetic_market(**synth["synthetic"])),
        "dataset": Dataset(FeatureHandler(path), {"test": ("2024-01-01", None)}),
    }
    for name, source in sources.items():
        assert trading_calendar(source).equals(expected), name


@pytest.mark.parametrize(
    "source",
    [pytest.param(42, id="int"), pytest.param({"dataset": {"kwargs": {}}}, id="no-handler"),
     pytest.param([], id="empty"), pytest.param("missing.parquet", id="missing-file")],
)  # fmt: skip
def test_calendar_rejects_sources_without_dates(source):
    with pytest.raises(InvalidInputError):
        trading_calendar(source)


def test_calendar_extends_past_the_last_date_with_business_days(ta):
    assert ta.max() == d("2024-02-13") and ta.data_end == d("2024-02-13")
    assert [f"{ta.get(i):%m-%d}" for i in range(29, 35)] == [
        "02-13", "02-14", "02-15", "02-16", "02-19", "02-20"
    ]  # fmt: skip
    assert ta.align_time("2025-06-14") == d("2025-06-16")  # a Saturday, far ahead: Monday
    assert ta.align_idx("2024-02-17") == 33
    assert ta.max() == d("2024-02-13")  # materialising future days does not move the data's end
    bounded = TimeAdjuster(CAL, end_time="2024-02-16")
    assert bounded.max() == d("2024-02-16") and len(bounded.cals) == 33
    assert bounded.get(33) is None
    assert TimeAdjuster(CAL, future=False).get(30) is None
    assert TimeAdjuster(CAL, end_time="2024-02-07").max() == d("2024-02-07")
    assert pickle.loads(pickle.dumps(ta)).get(31) == d("2024-02-15")


def test_time_adjuster_without_data_uses_business_days():
    plain = TimeAdjuster()
    assert plain.get(0) == d("1990-01-01") and plain.get(5) == d("1990-01-08")
    assert plain.max() <= pd.Timestamp.today()


# --- TimeAdjuster, case by case -------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "tp_type", "idx"),
    [
        pytest.param("2024-01-15", "start", 9, id="holiday-start-snaps-forward"),
        pytest.param("2024-01-15", "end", 8, id="holiday-end-snaps-back"),
        pytest.param("2024-01-06", "start", 4, id="saturday-start"),
        pytest.param("2024-01-06", "end", 3, id="saturday-end"),
        pytest.param("2024-01-02", "start", 0, id="first-day-start"),
        pytest.param("2024-01-02", "end", 0, id="first-day-end"),
        pytest.param("2024-01-01", "start", 0, id="before-calendar-start"),
        pytest.param("2024-01-01", "end", -1, id="before-calendar-end"),
        pytest.param("2024-02-13 16:00", "end", 29, id="intraday-end"),
        pytest.param("2024-02-17", "end", 32, id="future-end"),
        pytest.param(None, "start", None, id="none"),
    ],
)
def test_align_idx(ta, point, tp_type, idx):
    assert ta.align_idx(point, tp_type) == idx


@pytest.mark.parametrize(
    ("point", "tp_type", "expected"),
    [
        pytest.param("2024-01-15", "start", "2024-01-16", id="holiday-start"),
        pytest.param("2024-01-15", "end", "2024-01-12", id="holiday-end"),
        pytest.param("2024-01-22", "end", "2024-01-22", id="trading-day"),
        pytest.param("2024-02-17", "start", "2024-02-19", id="future-start"),
        pytest.param(None, "end", None, id="none"),
    ],
)
def test_align_time(ta, point, tp_type, expected):
    assert ta.align_time(point, tp_type) == d(expected)


def test_align_time_off_the_calendar_raises(ta):
    with pytest.raises(CalendarRangeError, match="calendar starts 2024-01-02"):
        ta.align_time("2023-12-29", "end")
    with pytest.raises(CalendarRangeError, match="future=True"):
        TimeAdjuster(CAL, future=False).align_time("2024-02-14", "start")
    with pytest.raises(InvalidInputError, match="tp_type"):
        ta.align_idx("2024-01-02", "middle")
    with pytest.raises(InvalidInputError, match="not a date"):
        ta.align_idx("someday")


@pytest.mark.parametrize(
    ("a", "b", "interval"),
    [
        pytest.param("2024-01-22", "2024-01-12", 5, id="across-holiday"),
        pytest.param("2024-01-15", "2024-01-12", 1, id="holiday-aligned-start"),
        pytest.param("2024-01-12", "2024-01-22", -5, id="negative"),
        pytest.param("2024-02-20", "2024-02-13", 5, id="into-future"),
    ],
)
def test_cal_interval(ta, a, b, interval):
    assert ta.cal_interval(a, b) == interval


def test_cal_interval_of_open_end_raises(ta):
    with pytest.raises(InvalidInputError, match="open"):
        ta.cal_interval("2024-01-22", None)


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        pytest.param(("2024-01-13", "2024-01-21"), ("2024-01-16", "2024-01-19"), id="weekend"),
        pytest.param(["2024-01-15", "2024-01-15"], ("2024-01-16", "2024-01-12"), id="list"),
        pytest.param(("2024-01-20", None), ("2024-01-22", None), id="open-end"),
        pytest.param((None, "2024-01-14"), (None, "2024-01-12"), id="open-start"),
    ],
)
def test_align_seg_tuple(ta, segment, expected):
    assert fmt(ta.align_seg(segment)) == expected


def test_align_seg_dict_and_bad_input(ta):
    out = ta.align_seg({"train": ("2024-01-01", "2024-01-14"), "test": ("2024-02-10", None)})
    assert {k: fmt(v) for k, v in out.items()} == {
        "train": ("2024-01-02", "2024-01-12"),
        "test": ("2024-02-12", None),
    }
    with pytest.raises(InvalidInputError, match="pair"):
        ta.align_seg("2024-01-02")
    with pytest.raises(CalendarRangeError):  # an end before the calendar has no trading day
        ta.align_seg((None, "2024-01-01"))


@pytest.mark.parametrize(
    ("segment", "days", "expected"),
    [
        pytest.param(("2024-01-02", "2024-01-31"), 2, ("2024-01-02", "2024-01-18"), id="cut-end"),
        pytest.param(("2024-01-02", "2024-01-10"), 2, ("2024-01-02", "2024-01-10"), id="kept"),
        pytest.param(("2024-01-19", "2024-01-31"), 3, ("2024-01-17", "2024-01-17"), id="both"),
        pytest.param((None, None), 2, (None, "2024-01-18"), id="open-ends"),
        pytest.param(("2024-01-02", "2024-01-13"), 0, ("2024-01-02", "2024-01-12"), id="aligned"),
    ],
)
def test_truncate(ta, segment, days, expected):
    # test start 2024-01-22 is idx 13: the cut-off is idx 13 - days
    assert fmt(ta.truncate(segment, "2024-01-22", days)) == expected


def test_truncate_before_calendar_start_raises(ta):
    with pytest.raises(CalendarRangeError, match="before the calendar"):
        ta.truncate(("2024-01-02", "2024-01-05"), "2024-01-03", 2)


@pytest.mark.parametrize(
    ("seg", "rtype", "expected"),
    [
        pytest.param(("2024-01-22", "2024-01-26"), "sliding", ("2024-01-29", "2024-02-02"),
                     id="sliding"),
        pytest.param(("2024-01-22", "2024-01-26"), "expanding", ("2024-01-22", "2024-02-02"),
                     id="expanding"),
        pytest.param(("2024-01-10", "2024-01-15"), "sliding", ("2024-01-18", "2024-01-22"),
                     id="holiday-end-aligned-back"),
        pytest.param(("2024-01-22", None), "sliding", ("2024-01-29", None), id="open-end"),
        pytest.param((None, "2024-01-12"), "sliding", (None, "2024-01-22"), id="open-start"),
        pytest.param(("2024-02-12", "2024-02-13"), "sliding", ("2024-02-19", "2024-02-20"),
                     id="into-future"),
    ],
)  # fmt: skip
def test_shift(ta, seg, rtype, expected):
    assert fmt(ta.shift(seg, 5, rtype)) == expected


def test_shift_on_a_bounded_calendar_as_qlib():
    bounded = TimeAdjuster(CAL, future=False)
    # an end past the calendar becomes open; a start past it ends the rolling (KeyError)
    assert fmt(bounded.shift(("2024-02-05", "2024-02-09"), 5)) == ("2024-02-12", None)
    assert fmt(bounded.shift(("2024-02-06", "2024-02-09"), 5)) == ("2024-02-13", None)
    with pytest.raises(KeyError):  # idx 25 + 5 = 30, the calendar's length (Qlib let it by)
        bounded.shift(("2024-02-07", "2024-02-09"), 5)
    with pytest.raises(CalendarRangeError, match="leaves the calendar"):
        bounded.shift(("2024-02-07", "2024-02-09"), 5)
    with pytest.raises(InvalidInputError, match="rtype"):
        bounded.shift(("2024-02-07", "2024-02-09"), 5, "rolling")


def test_get(ta):
    assert ta.get(0) == d("2024-01-02") and ta.get(29) == d("2024-02-13")
    assert ta.get(None) is None
    with pytest.raises(CalendarRangeError, match="before the first day"):
        ta.get(-1)


# --- RollingGen against the hand-worked calendar --------------------------------------------


def roll(test, **kwargs) -> list[dict]:
    kwargs.setdefault("calendar", CAL)
    return RollingGen(step=5, **kwargs).generate(make_task(test))


def test_rolling_expanding():
    tasks = roll(("2024-01-20", "2024-02-09"), rtype=ROLL_EX)
    assert [segs(t) for t in tasks] == [
        {"train": ("2024-01-02", "2024-01-12"), "valid": ("2024-01-16", "2024-01-19"),
         "test": ("2024-01-22", "2024-01-26")},
        {"train": ("2024-01-02", "2024-01-22"), "valid": ("2024-01-23", "2024-01-26"),
         "test": ("2024-01-29", "2024-02-02")},
        {"train": ("2024-01-02", "2024-01-29"), "valid": ("2024-01-30", "2024-02-02"),
         "test": ("2024-02-05", "2024-02-09")},
    ]  # fmt: skip
    assert [handler_end(t) for t in tasks] == ["2024-01-26", "2024-02-02", "2024-02-09"]


def test_rolling_sliding_clips_the_last_test_segment_to_the_test_end():
    tasks = roll(("2024-01-20", "2024-02-07"), rtype=ROLL_SD)
    assert [segs(t) for t in tasks] == [
        {"train": ("2024-01-02", "2024-01-12"), "valid": ("2024-01-16", "2024-01-19"),
         "test": ("2024-01-22", "2024-01-26")},
        {"train": ("2024-01-09", "2024-01-22"), "valid": ("2024-01-23", "2024-01-26"),
         "test": ("2024-01-29", "2024-02-02")},
        {"train": ("2024-01-17", "2024-01-29"), "valid": ("2024-01-30", "2024-02-02"),
         "test": ("2024-02-05", "2024-02-07")},  # Qlib: ("2024-02-05", "2024-02-09")
    ]  # fmt: skip


def test_rolling_trunc_days():
    tasks = roll(("2024-01-20", "2024-02-09"), trunc_days=2)
    # test start idx 13 -> train/valid end at idx 11 (2024-01-18), then roll keeping that gap
    assert [segs(t) for t in tasks] == [
        {"train": ("2024-01-02", "2024-01-12"), "valid": ("2024-01-16", "2024-01-18"),
         "test": ("2024-01-22", "2024-01-26")},
        {"train": ("2024-01-02", "2024-01-22"), "valid": ("2024-01-23", "2024-01-25"),
         "test": ("2024-01-29", "2024-02-02")},
        {"train": ("2024-01-02", "2024-01-29"), "valid": ("2024-01-30", "2024-02-01"),
         "test": ("2024-02-05", "2024-02-09")},
    ]  # fmt: skip


def test_rolling_open_ended_test_keeps_the_last_segment_open():
    tasks = roll(("2024-01-20", None))
    # rolls while the test start is on or before the data's last date (2024-02-13)
    assert [segs(t)["test"] for t in tasks] == [
        ("2024-01-22", "2024-01-26"),
        ("2024-01-29", "2024-02-02"),
        ("2024-02-05", "2024-02-09"),
        ("2024-02-12", None),
    ]
    assert segs(tasks[-1])["train"] == ("2024-01-02", "2024-02-05")
    assert segs(tasks[-1])["valid"] == ("2024-02-06", "2024-02-09")
    assert [handler_end(t) for t in tasks] == ["2024-01-26", "2024-02-02", "2024-02-09", None]


def test_rolling_test_end_beyond_the_data():
    tasks = roll(("2024-01-20", "2024-03-02"))  # a Saturday past the data
    assert [segs(t)["test"] for t in tasks] == [
        ("2024-01-22", "2024-01-26"),
        ("2024-01-29", "2024-02-02"),
        ("2024-02-05", "2024-02-09"),
        ("2024-02-12", "2024-03-01"),
    ]
    assert handler_end(tasks[-1]) == "2024-03-01"


def test_rolling_future_test_segment_and_missing_future_calendar():
    # qlib #1660: a test segment past the data (or a calendar without future days) crashed
    tasks = roll(("2024-02-20", None))
    assert [segs(t)["test"] for t in tasks] == [("2024-02-20", None)]
    tasks = roll(("2024-01-20", None), calendar=TimeAdjuster(CAL, future=False))
    assert [segs(t)["test"] for t in tasks] == [
        ("2024-01-22", "2024-01-26"),
        ("2024-01-29", "2024-02-02"),
        ("2024-02-05", "2024-02-09"),
        ("2024-02-12", None),
    ]


def test_rolling_short_test_and_input_untouched():
    task = make_task(("2024-01-22", "2024-01-23"))
    before = copy.deepcopy(task)
    tasks = RollingGen(step=5, calendar=CAL)(task)
    assert [segs(t)["test"] for t in tasks] == [("2024-01-22", "2024-01-23")]
    assert task == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"step": 0}, "step", id="step-zero"),
        pytest.param({"step": 2.5}, "step", id="step-float"),
        pytest.param({"rtype": "rolling"}, "rtype", id="rtype"),
        pytest.param({"trunc_days": -1}, "trunc_days", id="trunc-days"),
    ],
)
def test_rolling_gen_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        RollingGen(calendar=CAL, **kwargs)


def test_rolling_rejects_bad_tasks():
    gen = RollingGen(step=5, calendar=CAL)
    with pytest.raises(InvalidInputError, match="segments"):
        gen.generate({"dataset": {"kwargs": {}}})
    with pytest.raises(InvalidInputError, match="no start"):
        gen.generate(make_task((None, "2024-02-09")))
    with pytest.raises(InvalidInputError, match="holds no trading day"):
        gen.generate(make_task(("2024-01-13", "2024-01-14")))
    with pytest.raises(InvalidInputError, match="calendar="):
        RollingGen(step=5).generate(make_task(("2024-01-22", None)))  # handler without data


def test_rolling_takes_the_calendar_from_the_task_handler():
    task = make_task(("2024-01-20", None))
    synth = {"synthetic": {"n_instruments": 3, "n_days": 30, "start": "2024-01-01"}}
    task["dataset"]["kwargs"]["handler"]["kwargs"]["data"] = synth  # 2024-01-01 .. 2024-02-09
    tasks = RollingGen(step=5).generate(task)
    assert [segs(t)["test"] for t in tasks] == [
        ("2024-01-22", "2024-01-26"),
        ("2024-01-29", "2024-02-02"),
        ("2024-02-05", None),
    ]
    dataset = Dataset(**tasks[-1]["dataset"]["kwargs"])  # the configs still build
    assert dataset.handler.end_time is None


# --- gen_following_tasks -------------------------------------------------------------------


def test_gen_following_tasks():
    gen = RollingGen(step=5, rtype=ROLL_SD, calendar=CAL)
    first = make_task(("2024-01-22", "2024-01-26"))
    first["dataset"]["kwargs"]["segments"]["valid"] = ["2024-01-16", "2024-01-19"]  # from JSON
    following = gen.gen_following_tasks(first, pd.Timestamp("2024-02-05"))
    assert [segs(t) for t in following] == [
        {"train": ("2024-01-09", "2024-01-22"), "valid": ("2024-01-23", "2024-01-26"),
         "test": ("2024-01-29", "2024-02-02")},
        {"train": ("2024-01-17", "2024-01-29"), "valid": ("2024-01-30", "2024-02-02"),
         "test": ("2024-02-05", "2024-02-09")},
    ]  # fmt: skip
    assert [handler_end(t) for t in following] == ["2024-02-02", "2024-02-09"]
    # None (or past the data): up to the data's last date; test segments keep a full step
    assert [segs(t)["test"] for t in gen.gen_following_tasks(first, None)][-1] == (
        "2024-02-12",
        "2024-02-16",
    )
    assert gen.gen_following_tasks(first, "2024-01-26") == []
    with pytest.raises(InvalidInputError, match="not a date"):
        gen.gen_following_tasks(first, "soon")


def test_gen_following_tasks_keeps_open_ends_open():
    gen = RollingGen(step=5, calendar=CAL)
    latest = make_task(("2024-01-22", None))
    following = gen.gen_following_tasks(latest, "2024-02-13")
    assert [segs(t)["test"] for t in following] == [
        ("2024-01-29", None),
        ("2024-02-05", None),
        ("2024-02-12", None),
    ]
    assert all(handler_end(t) is None for t in following)


# --- handler_mod ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler_end_time", "test_end", "expected"),
    [
        pytest.param("2024-01-19", "2024-02-02", "2024-02-02", id="extended"),
        pytest.param("2024-02-09", "2024-02-02", "2024-02-09", id="already-later"),
        pytest.param("2024-02-03", "2024-02-05", "2024-02-03", id="same-trading-day"),
        pytest.param("2024-01-19", None, None, id="open-test-end-pr2068"),
        pytest.param(None, "2024-02-02", None, id="open-handler"),
    ],
)
def test_handler_mod(handler_end_time, test_end, expected):
    task = make_task(("2024-01-29", test_end), handler_end_time)
    handler_mod(task, RollingGen(calendar=CAL))
    assert handler_end(task) == expected


def test_handler_mod_tolerates_other_handlers():
    gen = RollingGen(calendar=CAL)
    handler = FeatureHandler({"synthetic": {"n_days": 10}}, end_time="2024-01-19")
    task = make_task(("2024-01-29", None))
    task["dataset"]["kwargs"]["handler"] = handler
    handler_mod(task, gen)
    new = task["dataset"]["kwargs"]["handler"]
    assert new is not handler and new.end_time is None and handler.end_time == d("2024-01-19")
    for other in ("file:///tmp/h.pkl", {"class": "FeatureHandler"}):
        task["dataset"]["kwargs"]["handler"] = other
        handler_mod(task, gen)
        assert task["dataset"]["kwargs"]["handler"] == other
    del task["dataset"]["kwargs"]["handler"]
    handler_mod(task, gen)  # no handler: nothing to do


def test_trunc_segments_in_place(ta):
    segments = {"train": (d("2024-01-02"), d("2024-01-31")), "test": (d("2024-01-22"), None)}
    trunc_segments(ta, segments, 3)
    assert {k: fmt(v) for k, v in segments.items()} == {
        "train": ("2024-01-02", "2024-01-17"),
        "test": ("2024-01-22", None),
    }


# --- task_generator ------------------------------------------------------------------------


class LossGen(TaskGen):
    """Two tasks per template, one per loss."""

    def generate(self, task: dict) -> list[dict]:
        out = []
        for loss in ("mse", "huber"):
            t = copy.deepcopy(task)
            t["model"]["kwargs"] = {"loss": loss}
            out.append(t)
        return out


def test_task_generator_two_generators_cross_product():
    templates = [make_task(("2024-01-20", "2024-02-09")), make_task(("2024-01-29", "2024-02-09"))]
    tasks = task_generator(templates, [LossGen(), RollingGen(step=5, calendar=CAL)])
    assert len(tasks) == 2 * 3 + 2 * 2  # losses x rolling windows of each template
    assert [(t["model"]["kwargs"]["loss"], segs(t)["test"][0]) for t in tasks[:7]] == [
        ("mse", "2024-01-22"), ("mse", "2024-01-29"), ("mse", "2024-02-05"),
        ("huber", "2024-01-22"), ("huber", "2024-01-29"), ("huber", "2024-02-05"),
        ("mse", "2024-01-29"),
    ]  # fmt: skip
    single = task_generator(templates[0], LossGen())
    assert [t["model"]["kwargs"]["loss"] for t in single] == ["mse", "huber"]
    assert LossGen()(templates[0]) == single
    with pytest.raises(InvalidInputError, match="TaskGen"):
        task_generator(templates, [LossGen(), "rolling"])
