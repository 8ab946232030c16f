"""Data layer of the research workflow: the OHLCV loader, the synthetic market, the feature
handler (checked against direct pandas computations), the Dataset and the config helpers."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.errors import InvalidInputError
from tracker.online.data.dataset import Dataset
from tracker.online.data.features import (
    FeatureHandler,
    _rext,
    _Rolling,
    dropna_label,
    feature_names,
)
from tracker.online.data.loader import (
    load_ohlcv,
    make_synthetic_market,
    simulate_market,
    write_synthetic_market,
)
from tracker.online.utils import flatten_dict, init_instance_by_config

COLUMNS = ["datetime", "instrument", "open", "high", "low", "close", "volume"]
REAL = "sp500_5yr_2013_2018.parquet"


def hand_made(n_days: int = 40, names: tuple[str, ...] = ("AAA", "BBB", "CCC")) -> pd.DataFrame:
    """A flat OHLCV frame: random walks with consistent bars, sorted by (datetime, instrument)."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2021-01-04", periods=n_days)
    rows = []
    for k, name in enumerate(names):
        close = (20.0 + 10 * k) * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        opened = close * np.exp(rng.normal(0, 0.01, n_days))
        high = np.maximum(opened, close) * (1 + rng.uniform(0, 0.02, n_days))
        low = np.minimum(opened, close) * (1 - rng.uniform(0, 0.02, n_days))
        volume = rng.integers(1_000, 50_000, n_days).astype(float)
        bars = {"open": opened, "high": high, "low": low, "close": close, "volume": volume}
        rows.append(pd.DataFrame({"datetime": days, "instrument": name, **bars}))
    return pd.concat(rows).sort_values(["datetime", "instrument"], ignore_index=True)


def raw_features(df: pd.DataFrame, **kw) -> pd.DataFrame:
    return FeatureHandler(df, normalize=False, **kw).fetch()


# --- loader -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"], ids=["parquet", "csv"])
def test_loader_round_trip(tmp_path, suffix):
    path = write_synthetic_market(tmp_path / f"m{suffix}", n_instruments=7, n_days=30, seed=3)
    got = load_ohlcv(path)
    expected = make_synthetic_market(n_instruments=7, n_days=30, seed=3)
    pd.testing.assert_frame_equal(got, expected)
    assert got.index.names == ["datetime", "instrument"]
    assert got.index.is_monotonic_increasing
    assert got.index.levels[0].dtype == "datetime64[ns]"
    assert isinstance(got.index[0][0], pd.Timestamp)
    assert list(got.columns) == ["open", "high", "low", "close", "volume"]
    assert (got.dtypes == "float64").all()


def test_loader_filters_and_ignores_extra_columns(tmp_path):
    flat = hand_made().assign(extra="x", volume=lambda d: d["volume"].astype(int))
    flat.to_parquet(tmp_path / "p.parquet", index=False)
    got = load_ohlcv(tmp_path / "p.parquet", "2021-01-06", "2021-01-08", ["AAA", "CCC"])
    assert got.index.get_level_values("instrument").unique().tolist() == ["AAA", "CCC"]
    assert got.index.get_level_values("datetime").unique().strftime("%d").tolist() == [
        "06",
        "07",
        "08",
    ]
    assert "extra" not in got.columns and got["volume"].dtype == "float64"


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def _swap_rows(df: pd.DataFrame) -> pd.DataFrame:
    order = list(range(len(df)))
    order[4], order[5] = 5, 4
    return df.iloc[order]


BAD_FILES = {
    "missing-column": (
        lambda df: df.drop(columns=["low", "volume"]),
        "bad.csv",
        r"bad\.csv: missing column\(s\) low, volume \(found: datetime, instrument, open, high, "
        r"close\); rename",
    ),
    "duplicate-keys": (
        lambda df: pd.concat([df, df.iloc[[3]]]).sort_values(["datetime", "instrument"]),
        "bad.parquet",
        r"bad\.parquet: 2 rows share a duplicate \(datetime, instrument\) key, e\.g\. "
        r"\(2021-01-05, AAA\); keep one row",
    ),
    "unsorted": (
        _swap_rows,
        "bad.csv",
        r"bad\.csv: not sorted by \(datetime, instrument\): row 5 \(2021-01-05, BBB\) comes "
        r"after row 4 \(2021-01-05, CCC\); sort it first",
    ),
    "empty-rows": (lambda df: df.iloc[:0], "bad.parquet", r"bad\.parquet: the file is empty"),
    "non-numeric": (
        lambda df: df.assign(close=df["close"].astype(object).where(df.index != 2, "1,25")),
        "bad.csv",
        r"bad\.csv: column close is not numeric \(1 bad value\(s\), e\.g\. row 2: '1,25'\)",
    ),
    "bad-date": (
        lambda df: df.assign(datetime=df["datetime"].astype(str).where(df.index != 1, "soon")),
        "bad.csv",
        r"bad\.csv: column datetime does not parse as dates",
    ),
    "empty-instrument": (
        lambda df: df.assign(instrument=df["instrument"].where(df.index != 3, None)),
        "bad.parquet",
        r"bad\.parquet: row 3 has an empty datetime or instrument",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_loader_rejects_bad_files(tmp_path, case):
    change, name, message = BAD_FILES[case]
    path = _write(tmp_path, change(hand_made(n_days=5)), name)
    with pytest.raises(InvalidInputError, match=message):
        load_ohlcv(path)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "none.parquet", r"none\.parquet: file not found"),
        (b"", "zero.csv", r"zero\.csv: the file is empty"),
        (b"datetime,instrument,open,high,low,close,volume\n", "head.csv", "the file is empty"),
        (b"not parquet at all", "junk.parquet", r"junk\.parquet: not a readable Parquet file"),
        (b"a,b\n", "data.txt", r"data\.txt: unknown file type; use a \.parquet"),
    ],
    ids=["missing-file", "zero-bytes", "header-only", "corrupt-parquet", "unknown-suffix"],
)
def test_loader_rejects_unreadable_files(tmp_path, content, name, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(InvalidInputError, match=message) as info:
        load_ohlcv(tmp_path / name)
    assert isinstance(info.value, ValueError)


def test_dataframe_source_is_validated_like_a_file():
    with pytest.raises(InvalidInputError, match="DataFrame: not sorted"):
        FeatureHandler(_swap_rows(hand_made(n_days=5)))


# --- synthetic market ---------------------------------------------------------------------


def test_synthetic_market_is_deterministic_and_consistent():
    a = make_synthetic_market(n_instruments=20, n_days=60, seed=5)
    pd.testing.assert_frame_equal(a, make_synthetic_market(n_instruments=20, n_days=60, seed=5))
    assert not a.equals(make_synthetic_market(n_instruments=20, n_days=60, seed=6))
    assert a.shape == (1200, 5) and a.index.is_monotonic_increasing
    days = a.index.get_level_values("datetime").unique()
    assert (days == pd.bdate_range("2020-01-01", periods=60)).all()
    assert (a[["open", "high", "low", "close"]] > 0).all().all()
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()
    assert (a["volume"] >= 1).all() and (a["volume"] == a["volume"].round()).all()
    assert a.notna().all().all()


def _mean_rank_ic(x: pd.Series, label: pd.Series) -> float:
    both = pd.DataFrame({"x": x, "y": label}).dropna()
    ranks = both.groupby(level="datetime").rank()
    return float(ranks.groupby(level="datetime").corr().xs("x", level=-1)["y"].mean())


@pytest.mark.parametrize("signal", [0.0, 0.1], ids=["no-signal", "signal"])
def test_synthetic_signal_is_real(signal):
    market, z = simulate_market(n_instruments=100, n_days=400, seed=0, signal=signal)
    frame = FeatureHandler(market).fetch()
    label = frame[("label", "LABEL0")]
    ic_latent = _mean_rank_ic(z, label)
    ic_feature = _mean_rank_ic(-frame[("feature", "VMA60")], label)  # high volume: low VMA
    if signal:
        assert ic_latent > 0.06 and ic_feature > 0.03
    else:
        assert abs(ic_latent) < 0.015 and abs(ic_feature) < 0.015


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(InvalidInputError, match=r"signal must be in \(-1, 1\)"):
        make_synthetic_market(signal=1.5)


# --- features -----------------------------------------------------------------------------


def test_feature_names_follow_qlib():
    names = feature_names()
    assert len(names) == 12 + 14 * 5 and len(set(names)) == len(names)
    for name in ("KLEN", "KMID", "OPEN0", "ROC5", "MA20", "STD10", "VMA5", "VSTD60", "CORR30"):
        assert name in names
    frame = FeatureHandler({"synthetic": {"n_instruments": 5, "n_days": 70}}).fetch()
    assert frame.columns.tolist() == [("feature", n) for n in names] + [("label", "LABEL0")]
    assert frame["feature"].dtypes.eq("float32").all()


def test_features_match_pandas():
    flat = hand_made()
    got = raw_features(flat, windows=(5, 10))
    df = flat.set_index(["datetime", "instrument"])
    by = df.groupby(level="instrument", group_keys=False)

    def roll(col: str, w: int, how: str) -> pd.Series:
        return by[col].apply(lambda s: getattr(s.rolling(w), how)())

    c, v = df["close"], df["volume"]
    expected = {
        "ROC5": by["close"].shift(5) / c,
        "MA10": roll("close", 10, "mean") / c,
        "STD5": roll("close", 5, "std") / c,
        "VMA5": roll("volume", 5, "mean") / (v + 1e-12),
        "VSTD10": roll("volume", 10, "std") / (v + 1e-12),
        "KLEN": (df["high"] - df["low"]) / df["open"],
        "KMID": (c - df["open"]) / df["open"],
        "MAX10": roll("high", 10, "max") / c,
        "RSV5": (c - roll("low", 5, "min")) / (roll("high", 5, "max") - roll("low", 5, "min")),
        "CORR10": by.apply(lambda g: g["close"].rolling(10).corr(np.log(g["volume"] + 1))),
        "BETA5": by["close"].apply(
            lambda s: s.rolling(5).apply(lambda x: np.polyfit(np.arange(5), x, 1)[0])
        )
        / c,
        "LABEL0": by["close"].shift(-2) / by["close"].shift(-1) - 1,
    }
    for name, series in expected.items():
        column = ("label", name) if name == "LABEL0" else ("feature", name)
        want = series.reindex(got.index).to_numpy(float)
        have = got[column].to_numpy(float)
        assert np.array_equal(np.isnan(have), np.isnan(want)), name
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=1e-7, equal_nan=True, err_msg=name)
    # The first w-1 (ROC: w) days of each instrument have no value, the last two no label.
    assert got[("feature", "ROC5")].isna().sum() == 5 * 3
    assert got[("label", "LABEL0")].isna().sum() == 2 * 3


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_rolling_kernels_match_pandas_with_gaps(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(100, 5, (4, 50))
    x[0, :7] = np.nan  # not started yet
    x[1, [10, 11, 30]] = np.nan  # gaps inside the history (the slower, counting path)
    x[3] = np.nan  # never any value
    frame = pd.DataFrame(x.T)
    for w in (1, 3, 7, 50, 60):
        np.testing.assert_allclose(_Rolling(x)(w), frame.rolling(w).sum().to_numpy().T, rtol=1e-9)
        for op, how in ((np.maximum, "max"), (np.minimum, "min")):
            expected = getattr(frame.rolling(w), how)().to_numpy().T
            np.testing.assert_array_equal(_rext(x, w, op), expected)


def test_normalisation_is_robust_zscore_per_day():
    flat = hand_made(n_days=40, names=tuple(f"I{k:02d}" for k in range(15)))
    day = pd.Timestamp("2021-02-15")
    spike = (flat["datetime"] == day) & (flat["instrument"] == "I03")
    flat.loc[spike, "high"] *= 3  # an outlier bar
    norm = FeatureHandler(flat).fetch()["feature"]
    raw = raw_features(flat)["feature"]
    assert norm.notna().all().all() and norm.abs().max().max() <= 3.0
    medians = norm.groupby(level="datetime").median()
    assert medians.abs().max().max() < 1e-6
    for name in ("VMA5", "ROC10", "KLEN"):
        x = raw.loc[day, name]
        mad = (x - x.median()).abs().median()
        z = ((x - x.median()) / (1.4826 * (mad + 1e-12))).clip(-3, 3)
        np.testing.assert_allclose(norm.loc[day, name], z, rtol=1e-5, atol=1e-6, err_msg=name)
    assert raw.loc[(day, "I03"), "KLEN"] > 1 and norm.loc[(day, "I03"), "KLEN"] == 3.0
    # Warm-up rows are kept: NaN raw, 0 (the day's median) once normalised.
    first = flat["datetime"].min()
    assert raw.loc[first, "MA5"].isna().all() and (norm.loc[first, "MA5"] == 0).all()


def test_bad_ticks_policy():
    flat = hand_made(n_days=30)

    def at(day: pd.Timestamp, inst: str) -> pd.Index:
        return flat.index[(flat["datetime"] == day) & (flat["instrument"] == inst)]

    d10, d12, d20 = (pd.bdate_range("2021-01-04", periods=30)[k] for k in (10, 12, 20))
    flat.loc[at(d10, "AAA"), "open"] = np.nan  # a NaN open
    flat.loc[at(d12, "BBB"), "close"] = np.inf  # an infinite close
    flat.loc[at(d20, "CCC"), ["high", "low"]] = flat.loc[at(d20, "CCC"), ["low", "high"]].values
    flat.loc[at(d20, "AAA"), "volume"] = 0.0
    raw = raw_features(flat, windows=(5,))
    row = flat.loc[at(d10, "AAA")].iloc[0]
    assert raw.loc[(d10, "AAA"), ("feature", "KMID")] == 0.0  # open := that day's close
    assert raw.loc[(d10, "AAA"), ("feature", "KLEN")] == pytest.approx(
        (row["high"] - row["low"]) / row["close"], rel=1e-5
    )
    # The inf close is a gap: features use the previous close, labels touching it are NaN.
    prev = flat.loc[at(d12 - pd.offsets.BDay(), "BBB")].iloc[0]
    assert raw.loc[(d12, "BBB"), ("feature", "OPEN0")] == pytest.approx(
        flat.loc[at(d12, "BBB"), "open"].iloc[0] / prev["close"], rel=1e-5
    )
    bbb = raw.xs("BBB", level="instrument")[("label", "LABEL0")]
    assert bbb.isna().sum() == 2 + 2 and bbb[d12 - pd.offsets.BDay(2) :].iloc[:2].isna().all()
    assert raw[("feature", "KLEN")].min() >= 0  # the high < low row was mended
    assert np.isfinite(
        raw["feature"].to_numpy(float)[~np.isnan(raw["feature"].to_numpy(float))]
    ).all()
    norm = FeatureHandler(flat, windows=(5,)).fetch()["feature"]
    assert norm.loc[(d20, "AAA"), "VMA5"] == 3.0  # zero volume: huge ratio, clipped
    assert norm.notna().all().all()


def test_missing_day_gives_nan_labels_and_no_new_rows():
    flat = hand_made(n_days=20)
    day = pd.bdate_range("2021-01-04", periods=20)[9]
    gap = flat[~((flat["datetime"] == day) & (flat["instrument"] == "AAA"))]
    frame = raw_features(gap, windows=(5,))
    assert len(frame) == len(gap)
    labels = frame.xs("AAA", level="instrument")[("label", "LABEL0")]
    assert labels.iloc[7:9].isna().all() and labels.iloc[9:-2].notna().all()
    assert frame.xs("AAA", level="instrument")[("feature", "MA5")].iloc[4:].notna().all()


def test_fetch_col_sets_data_keys_and_dropna_label():
    handler = FeatureHandler(
        {"synthetic": {"n_instruments": 12, "n_days": 90}}, label_norm="cszscore"
    )
    every = handler.fetch()
    assert every.columns.nlevels == 2 and every.shape == (12 * 90, 83)
    assert handler.fetch(col_set="feature").columns.tolist() == feature_names()
    assert handler.fetch(col_set="label").columns.tolist() == ["LABEL0"]
    both = handler.fetch("2020-02-03", "2020-02-07", col_set=["feature", "label"])
    assert both.columns.nlevels == 2 and len(both) == 5 * 12
    assert every[("label", "LABEL0")].isna().sum() == 2 * 12  # kept for prediction
    assert len(dropna_label(every)) == 88 * 12
    assert len(dropna_label(handler.fetch(col_set="label"))) == 88 * 12
    with pytest.raises(InvalidInputError, match="no label column"):
        dropna_label(handler.fetch(col_set="feature"))
    learn = dropna_label(handler.fetch(col_set="label", data_key="learn"))["LABEL0"]
    by_day = learn.groupby(level="datetime")
    assert by_day.mean().abs().max() < 1e-9 and (by_day.std() - 1).abs().max() < 1e-9
    pd.testing.assert_series_equal(
        handler.fetch(col_set="label")["LABEL0"], every["label"]["LABEL0"]
    )
    raw = handler.fetch(col_set="feature", data_key="raw")
    expected = FeatureHandler({"synthetic": {"n_instruments": 12, "n_days": 90}}, normalize=False)
    pd.testing.assert_frame_equal(raw, expected.fetch(col_set="feature"))
    pd.testing.assert_frame_equal(
        handler.fetch(col_set="label", data_key="raw"), handler.fetch(col_set="label")
    )
    for bad in ({"col_set": "features"}, {"data_key": "train"}):
        with pytest.raises(InvalidInputError, match="col_set|data_key"):
            handler.fetch(**bad)


def test_handler_range_and_universe():
    data = {"synthetic": {"n_instruments": 10, "n_days": 120, "seed": 2}}
    full = FeatureHandler(data).fetch()
    cut = FeatureHandler(data, start_time="2020-03-02", end_time="2020-04-30").fetch()
    assert cut.index.get_level_values("datetime").min() == pd.Timestamp("2020-03-02")
    pd.testing.assert_frame_equal(cut, full.loc["2020-03-02":"2020-04-30"])  # history reused
    few = FeatureHandler(data, instruments=["SYN1", "SYN4"], normalize=False).fetch()
    assert few.index.get_level_values("instrument").unique().tolist() == ["SYN1", "SYN4"]
    pd.testing.assert_frame_equal(few, FeatureHandler(data, normalize=False).fetch().loc[few.index])
    with pytest.raises(InvalidInputError, match="no rows for instruments"):
        FeatureHandler(data, instruments=["NOPE"]).fetch()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "no/such/file.parquet"}, r"data file 'no/such/file\.parquet' not found"),
        ({"data": {"synthetic": {"n_stocks": 3}}}, "data.synthetic: got an unexpected keyword"),
        ({"data": {"other": {}}}, "data must be a file path"),
        ({"data": {"synthetic": {}}, "windows": (1, 5)}, "windows must be >= 2"),
        ({"data": {"synthetic": {}}, "label_norm": "rank"}, "label_norm must be"),
        ({"data": {"synthetic": {}}, "start_time": "2021", "end_time": "2020"}, "is after"),
    ],
    ids=[
        "missing-file",
        "bad-synthetic-kwarg",
        "bad-data-dict",
        "window-1",
        "label-norm",
        "start-after-end",
    ],  # fmt: skip
)
def test_handler_rejects_bad_config(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        FeatureHandler(**kwargs)


# --- dataset ------------------------------------------------------------------------------

HANDLER = {
    "class": "FeatureHandler",
    "module_path": "tracker.online.data.features",
    "kwargs": {"data": {"synthetic": {"n_instruments": 8, "n_days": 100, "seed": 1}}},
}
SEGMENTS = {
    "train": ("2020-01-01", "2020-03-31"),
    "valid": ["2020-04-01", "2020-04-30"],
    "test": (pd.Timestamp("2020-05-01"), None),
}


def test_dataset_prepare_segments_and_col_sets():
    ds = Dataset(HANDLER, SEGMENTS)
    assert isinstance(ds.handler, FeatureHandler) and list(ds.segments) == [
        "train",
        "valid",
        "test",
    ]
    assert ds.segments["test"] == (pd.Timestamp("2020-05-01"), None)
    train, valid, test = ds.prepare(["train", "valid", "test"])
    assert (len(train), len(valid), len(test)) == (8 * 65, 8 * 22, 8 * 13)
    assert train.index.get_level_values("datetime").max() == pd.Timestamp("2020-03-31")
    assert test.index.get_level_values("datetime").max() == pd.Timestamp("2020-05-19")
    assert ds.prepare("valid", col_set="feature").shape == (8 * 22, 82)
    label = ds.prepare("valid", col_set="label")
    assert label.columns.tolist() == ["LABEL0"]
    pair = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    assert pair.columns.nlevels == 2
    assert len(ds.prepare(slice("2020-01-06", "2020-01-10"))) == 8 * 5
    assert ds.config(dump_all=False, recursive=True) is ds
    handler = FeatureHandler({"synthetic": {"n_instruments": 3, "n_days": 10}})
    assert Dataset(handler, {"all": (None, None)}).handler is handler


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"train": ("2020-01-01",)}, r"segment 'train' must be a \(start, end\) pair"),
        ({"train": "2020-01-01"}, "must be a"),
        ({"train": ("2020-02-01", "2020-01-01")}, "start 2020-02-01 is after end 2020-01-01"),
        ({"train": ("someday", None)}, "'someday' is not a date"),
        ({}, "segments must be a non-empty mapping"),
    ],
    ids=["one-item", "string", "reversed", "not-a-date", "empty"],
)
def test_dataset_rejects_bad_segments(segments, message):
    with pytest.raises(InvalidInputError, match=message):
        Dataset(HANDLER, segments)


def test_dataset_errors():
    ds = Dataset(HANDLER, SEGMENTS)
    with pytest.raises(InvalidInputError, match="no segment 'tset'; segments: train, valid, test"):
        ds.prepare("tset")
    with pytest.raises(InvalidInputError, match="no segment 'x'"):
        ds.prepare(["train", "x"])
    with pytest.raises(
        InvalidInputError, match="module 'tracker.online.data.features' has no class 'Nope'"
    ):
        Dataset({"class": "Nope"}, SEGMENTS)
    with pytest.raises(InvalidInputError, match="expected a config or a FeatureHandler"):
        Dataset(42, SEGMENTS)


def test_dataset_pickles_without_data():
    ds = Dataset(HANDLER, SEGMENTS)
    before = ds.prepare(["train", "test"])
    blob = pickle.dumps(ds)
    assert len(blob) < 4_000
    again = pickle.loads(blob)
    assert again.handler._frames == {}
    for old, new in zip(before, again.prepare(["train", "test"]), strict=True):
        pd.testing.assert_frame_equal(old, new)
    assert ds.handler._frames  # pickling did not drop the live object's cache


def test_handler_path_source_pickles_small(tmp_path):
    path = write_synthetic_market(tmp_path / "m.parquet", n_instruments=5, n_days=80)
    handler = FeatureHandler(str(path))
    frame = handler.fetch()
    blob = pickle.dumps(handler)
    assert len(blob) < 2_000
    pd.testing.assert_frame_equal(pickle.loads(blob).fetch(), frame)


# --- config helpers -----------------------------------------------------------------------


class Widget:
    def __init__(self, size: int = 1, recorder: object = None) -> None:
        self.size, self.recorder = size, recorder


@pytest.mark.parametrize(
    ("config", "kwargs", "check"),
    [
        ({"class": "Widget", "module_path": __name__, "kwargs": {"size": 3}}, {}, (3, None)),
        ({"class": "Widget", "kwargs": {"size": 4}}, {"default_module": __name__}, (4, None)),
        (f"{__name__}.Widget", {}, (1, None)),
        ("Widget", {"default_module": __name__, "recorder": "r"}, (1, "r")),
        ({"class": Widget, "kwargs": {"size": 2}}, {}, (2, None)),
        ("Widget", {"default_module": __name__, "try_kwargs": {"recorder": "t", "x": 1}}, (1, "t")),
        (
            {"class": "Widget", "module_path": __name__, "kwargs": {"recorder": "cfg"}},
            {"try_kwargs": {"recorder": "try"}},
            (1, "cfg"),
        ),
    ],
    ids=[
        "dict",
        "default-module",
        "dotted-string",
        "string-kwargs",
        "class-object",
        "try-kwargs-filtered",
        "config-wins-over-try",
    ],  # fmt: skip
)
def test_init_instance_by_config(config, kwargs, check):
    made = init_instance_by_config(config, **kwargs)
    assert isinstance(made, Widget) and (made.size, made.recorder) == check


def test_init_instance_by_config_returns_ready_objects():
    widget = Widget()
    assert init_instance_by_config(widget) is widget
    assert init_instance_by_config(widget, accept_types=Widget) is widget
    assert init_instance_by_config([1, 2]) == [1, 2]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"class": "Nope", "module_path": __name__}, f"module '{__name__}' has no class 'Nope'"),
        ({"class": "X", "module_path": "no_such_mod_q"}, "class 'X': cannot import module"),
        ("no_such_mod_q.Thing", "class 'Thing': cannot import module 'no_such_mod_q'"),
        ({"module_path": __name__}, "has no 'class'"),
        ("Widget", "no module_path given"),
        ({"class": "Widget", "module_path": __name__, "kwargs": {"colour": 1}}, "bad kwargs"),
        ({"class": "Widget", "module_path": __name__, "kwargs": [1]}, "kwargs must be a mapping"),
    ],
    ids=[
        "unknown-class",
        "unknown-module",
        "unknown-dotted",
        "no-class",
        "no-module",
        "unknown-kwarg",
        "kwargs-not-mapping",
    ],  # fmt: skip
)
def test_init_instance_by_config_errors(config, message):
    with pytest.raises(InvalidInputError, match=message):
        init_instance_by_config(config)


def test_init_instance_by_config_rejects_wrong_ready_type():
    with pytest.raises(InvalidInputError, match="expected a config or a Widget, got int"):
        init_instance_by_config(3, accept_types=Widget)


@pytest.mark.parametrize(
    ("nested", "kwargs", "flat"),
    [
        ({"a": 1, "c": {"a": 2, "b": {"x": 5, "y": 10}}, "d": [1, 2, 3]}, {},
         {"a": 1, "c.a": 2, "c.b.x": 5, "c.b.y": 10, "d": [1, 2, 3]}),
        ({"a": {"b": 1}}, {"sep": "/"}, {"a/b": 1}),
        ({"a": {}, "b": None}, {}, {"b": None}),
        ({1: {2: "x"}}, {}, {"1.2": "x"}),
        ({"seg": {"test": ["2020", None]}}, {}, {"seg.test": ["2020", None]}),
    ],
    ids=["qlib-docstring", "separator", "empty-nested", "non-str-keys", "list-value"],
)  # fmt: skip
def test_flatten_dict(nested, kwargs, flat):
    assert flatten_dict(nested, **kwargs) == flat


# --- the real file (optional) -------------------------------------------------------------


def _real_file() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    for candidate in (Path("/work/shared/data") / REAL, root.parent / "shared" / "data" / REAL):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.slow
@pytest.mark.skipif(_real_file() is None, reason=f"{REAL} is not available")
def test_real_sp500_file():
    started = time.perf_counter()
    frame = FeatureHandler(_real_file()).fetch()
    elapsed = time.perf_counter() - started
    assert frame.shape == (619_040, 83)
    assert frame.index.get_level_values("instrument").nunique() == 505
    assert frame["feature"].notna().all().all() and frame["feature"].abs().max().max() <= 3
    label = frame[("label", "LABEL0")]
    assert label.notna().mean() > 0.995 and label.abs().max() < 1.5
    assert elapsed < 60  # a few seconds on 2 cores; generous for loaded CI machines
