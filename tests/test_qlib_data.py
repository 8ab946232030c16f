"""``tracker.qlib_data.write_qlib_data``: the files Qlib's provider reads, byte for byte
(read back here with numpy; ``tests/qlib/test_data.py`` reads them with Qlib itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.errors import InvalidInputError
from tracker.qlib_data import write_qlib_data

DAYS = pd.bdate_range("2021-03-01", periods=6)


def prices(code: str, days: pd.DatetimeIndex, base: float = 10.0) -> pd.DataFrame:
    n = len(days)
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "datetime": days,
            "instrument": code,
            "open": close - 0.5,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1000.0 + np.arange(n),
        }
    )


def frame() -> pd.DataFrame:
    """AAA every day; BBB from the third day with a gap on the fifth."""
    bbb = prices("BBB", DAYS[2:], base=50.0)
    return pd.concat([prices("AAA", DAYS), bbb.drop(index=2)], ignore_index=True)


def read_bin(path: Path) -> tuple[int, np.ndarray]:
    values = np.fromfile(path, dtype="<f4")
    return int(values[0]), values[1:]


def test_layout_calendar_instruments_and_features(tmp_path):
    root = write_qlib_data(frame(), tmp_path / "data", universes={"mine": ["BBB"]})
    assert (root / "calendars" / "day.txt").read_text().split() == [f"{d:%Y-%m-%d}" for d in DAYS]
    assert (root / "instruments" / "all.txt").read_text().splitlines() == [
        "AAA\t2021-03-01\t2021-03-08",
        "BBB\t2021-03-03\t2021-03-08",
    ]
    assert (root / "instruments" / "mine.txt").read_text() == "BBB\t2021-03-03\t2021-03-08\n"
    fields = {p.name for p in (root / "features" / "aaa").iterdir()}
    assert fields == {f"{f}.day.bin" for f in ("open", "high", "low", "close", "volume")} | {
        "factor.day.bin",
        "change.day.bin",
    }
    start, close = read_bin(root / "features" / "aaa" / "close.day.bin")
    assert start == 0 and close.tolist() == [10, 11, 12, 13, 14, 15]
    start, close = read_bin(root / "features" / "bbb" / "close.day.bin")
    assert start == 2  # the calendar index of BBB's first day
    assert close[0] == 50 and np.isnan(close[2]) and close[3] == 53  # the gap is NaN
    _, change = read_bin(root / "features" / "bbb" / "change.day.bin")
    assert np.isnan(change[0]) and change[1] == np.float32(51 / 50 - 1)
    assert change[3] == np.float32(53 / 51 - 1)  # against the previous close, over the gap
    _, factor = read_bin(root / "features" / "bbb" / "factor.day.bin")
    assert factor[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]


def test_optional_columns_and_a_qlib_style_index(tmp_path):
    data = prices("AAA", DAYS).assign(vwap=7.5, factor=0.5)
    root = write_qlib_data(data.set_index(["datetime", "instrument"]), tmp_path / "d")
    assert read_bin(root / "features" / "aaa" / "vwap.day.bin")[1].tolist() == [7.5] * 6
    assert read_bin(root / "features" / "aaa" / "factor.day.bin")[1].tolist() == [0.5] * 6


def test_device_names_are_stored_as_qlib_names_them(tmp_path):
    root = write_qlib_data(prices("CON", DAYS), tmp_path / "d")
    assert (root / "features" / "_qlib_con" / "close.day.bin").is_file()
    assert (root / "instruments" / "all.txt").read_text().startswith("CON\t")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (prices("AAA", DAYS).drop(columns="volume"), "lacks column.*volume"),
        (
            pd.concat([prices("AAA", DAYS), prices("AAA", DAYS[:1])]),
            "1 duplicate.*AAA on 2021-03-01",
        ),
        (pd.concat([prices("Aa", DAYS), prices("AA", DAYS)]), "differ only in case"),
        (prices("A/B", DAYS), "cannot be a Qlib file name"),
        (prices("AAA", DAYS).iloc[:0], "no rows"),
    ],
)
def test_bad_frames_are_refused_with_the_reason(tmp_path, data, message):
    with pytest.raises(InvalidInputError, match=message):
        write_qlib_data(data, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_bad_universes_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="codes not in the frame: \\['ZZZ'\\]"):
        write_qlib_data(frame(), tmp_path / "d", universes={"u": ["AAA", "ZZZ"]})
    with pytest.raises(InvalidInputError, match="other than 'all'"):
        write_qlib_data(frame(), tmp_path / "d", universes={"all": ["AAA"]})
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_replaced_only_when_asked(tmp_path):
    target = tmp_path / "d"
    write_qlib_data(frame(), target)
    with pytest.raises(InvalidInputError, match="overwrite=True"):
        write_qlib_data(prices("CCC", DAYS), target)
    write_qlib_data(prices("CCC", DAYS), target, overwrite=True)
    assert sorted(p.name for p in (target / "features").iterdir()) == ["ccc"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a Qlib provider directory"):
        write_qlib_data(frame(), other, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_non_numeric_prices_are_refused(tmp_path):
    data = prices("AAA", DAYS).astype({"volume": object})
    data.loc[3, "volume"] = "n/a"
    with pytest.raises(InvalidInputError, match="'volume' holds 1 non-numeric.*'n/a' for AAA"):
        write_qlib_data(data, tmp_path / "d")


def test_a_failure_while_writing_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "d"
    write_qlib_data(frame(), target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    # The file system refuses the second code's folder (name too long) after the calendar,
    # the instrument lists and the first code's files were written.
    data = pd.concat([prices("AAA", DAYS), prices("Z" * 300, DAYS)])
    with pytest.raises(OSError, match="too long"):
        write_qlib_data(data, target, overwrite=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no staging folder left
    with pytest.raises(OSError):
        write_qlib_data(data, tmp_path / "new")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
