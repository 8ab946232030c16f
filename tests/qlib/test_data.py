"""``write_qlib_data`` read back by Qlib's own provider (``qlib.data.D``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qlib.data import D

from tests.qlib.market import BENCH, CODES, DAYS, MARKET, synthetic_market

FIELDS = ["open", "high", "low", "close", "volume", "vwap", "factor", "change"]


def test_qlib_reads_back_what_was_written(qlib_store):
    assert list(D.calendar(freq="day")) == list(DAYS)
    assert sorted(D.list_instruments(D.instruments(MARKET), as_list=True)) == CODES
    assert sorted(D.list_instruments(D.instruments("all"), as_list=True)) == sorted([*CODES, BENCH])
    got = D.features(["S003", BENCH], [f"${f}" for f in FIELDS], freq="day")
    got.columns = FIELDS
    given = synthetic_market().set_index(["instrument", "datetime"]).sort_index()
    for code in ("S003", BENCH):
        want = given.loc[code]
        have = got.loc[code]
        for field in ("open", "high", "low", "close", "volume", "vwap"):
            np.testing.assert_array_equal(have[field], want[field].astype("float32"))
        assert (have["factor"] == 1.0).all()
        change = (want["close"] / want["close"].shift(1) - 1).astype("float32")
        np.testing.assert_allclose(have["change"].iloc[1:], change.iloc[1:], rtol=1e-6)
        assert np.isnan(have["change"].iloc[0])


def test_late_starts_gaps_and_device_names_through_qlib(tmp_path, monkeypatch):
    import sys

    import qlib

    from tracker.qlib_data import write_qlib_data

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # qlib.init replaces it
    days = pd.bdate_range("2021-03-01", periods=5)
    aux = pd.DataFrame({"datetime": days, "close": 10.0 + np.arange(5)}).assign(instrument="AUX")
    late = aux.iloc[[2, 4]].assign(instrument="LATE")  # starts on day 3, misses day 4
    data = pd.concat([aux, late]).assign(open=1.0, high=1.0, low=1.0, volume=1.0)
    root = write_qlib_data(data, tmp_path / "data")
    qlib.init(provider_uri=str(root), region="us", kernels=1)
    close = D.features(["AUX", "LATE"], ["$close"], freq="day")["$close"]
    assert close.loc["AUX"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]  # AUX is a device name
    assert list(close.loc["LATE"].index) == list(days[2:])
    assert close.loc["LATE"].iloc[[0, 2]].tolist() == [12.0, 14.0]
    assert np.isnan(close.loc["LATE"].iloc[1])
