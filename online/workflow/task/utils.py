"""Trading calendars taken from the data, and Qlib's ``TimeAdjuster`` over them.

The calendar is the sorted unique dates of a ``(datetime, instrument)`` panel. With
``future=True`` it goes on past the last date with business days (Mon-Fri), materialised on
demand, so a segment that reaches past the data (an open-ended or future test segment) always
has trading days to land on: Qlib instead needs a separate "future calendar" file and fails with
``TypeError: '>' not supported between NoneType and Timestamp`` without it (qlib #1660).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import CalendarRangeError, InvalidInputError
from tracker.online.data.loader import load_ohlcv, make_synthetic_market

DEFAULT_START = "1990-01-01"  # the plain business-day calendar used when no data is given
_CHUNK = 260  # business days materialised at a time past the data (about a year)
_CACHE: dict[tuple[Any, ...], pd.DatetimeIndex] = {}
_CACHE_SIZE = 16


def _stamp(value: Any, what: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what}: {value!r} is not a date ({e})") from None
    if pd.isna(stamp):
        raise InvalidInputError(f"{what}: {value!r} is not a date; pass a date or None")
    return stamp


def _index(dates: Any, what: str) -> pd.DatetimeIndex:
    try:
        index = pd.DatetimeIndex(pd.to_datetime(pd.Index(dates)))
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what}: the values are not dates ({e})") from None
    index = index[~index.isna()].unique().sort_values().as_unit("ns")
    if index.empty:
        raise InvalidInputError(f"{what}: no dates, so no trading calendar; pass data with rows")
    return pd.DatetimeIndex(index, name=None)


def _frame_dates(df: pd.DataFrame) -> pd.DatetimeIndex:
    if isinstance(df.index, pd.MultiIndex):
        level = "datetime" if "datetime" in df.index.names else 0
        return _index(df.index.get_level_values(level), "DataFrame index")
    if "datetime" in df.columns:
        return _index(df["datetime"], "DataFrame column 'datetime'")
    if isinstance(df.index, pd.DatetimeIndex):
        return _index(df.index, "DataFrame index")
    raise InvalidInputError(
        "DataFrame has no dates: give it a (datetime, instrument) index or a 'datetime' column"
    )


def _cached(key: tuple[Any, ...], load: Any) -> pd.DatetimeIndex:
    # Rolling re-derives the calendar on every call; re-reading a large file each time is slow.
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = load()
    return _CACHE[key]


def _file_dates(path: str | os.PathLike[str]) -> pd.DatetimeIndex:
    file = Path(path).resolve()
    if not file.is_file():
        raise InvalidInputError(f"{os.fspath(path)}: file not found; pass an OHLCV data file")
    stat = file.stat()  # a file that grows (new days) gets a new key
    key = ("file", str(file), stat.st_mtime_ns, stat.st_size)
    return _cached(key, lambda: _frame_dates(load_ohlcv(file)))


def trading_calendar(source: Any) -> pd.DatetimeIndex:
    """The sorted unique trading dates of some data.

    Args:
        source: a ``(datetime, instrument)`` DataFrame (or one with a ``datetime`` column), a
            Parquet/CSV path read by :func:`load_ohlcv`, ``{"synthetic": {...}}``
            (:func:`make_synthetic_market` kwargs), a ``FeatureHandler`` or
            ``Dataset`` object or config dict, a task dict (its dataset's handler), or a
            sequence of dates.

    Returns:
        The dates as a ``DatetimeIndex`` (nanosecond unit).

    Raises:
        InvalidInputError: the source has no dates or is not one of the above.
    """
    if isinstance(source, pd.DataFrame):
        return _frame_dates(source)
    if isinstance(source, (str, os.PathLike)):
        return _file_dates(source)
    if isinstance(source, Mapping):
        return _mapping_dates(source)
    if hasattr(source, "handler"):  # a Dataset
        return trading_calendar(source.handler)
    if callable(getattr(source, "load", None)):  # a FeatureHandler
        data = getattr(source, "data", None)
        if isinstance(data, Mapping) or (isinstance(data, str) and Path(data).is_file()):
            return trading_calendar(data)  # cached, unlike load()
        return _frame_dates(source.load())
    if isinstance(source, (pd.Index, pd.Series, np.ndarray, list, tuple)):
        return _index(source, "calendar")
    raise InvalidInputError(
        f"cannot take a trading calendar from a {type(source).__name__}; pass a DataFrame, a "
        "data file path, a FeatureHandler/Dataset (or its config) or a list of dates"
    )


def _mapping_dates(source: Mapping[str, Any]) -> pd.DatetimeIndex:
    if set(source) == {"synthetic"}:
        kwargs = dict(source["synthetic"] or {})
        key = ("synthetic", repr(sorted(kwargs.items())))
        return _cached(key, lambda: _frame_dates(make_synthetic_market(**kwargs)))
    if "dataset" in source:  # a task
        return trading_calendar(source["dataset"])
    kwargs = source.get("kwargs") or {}
    for name in ("handler", "data"):  # a Dataset config, then a FeatureHandler config
        if name in kwargs:
            return trading_calendar(kwargs[name])
    raise InvalidInputError(
        f"cannot find data in {dict(source)!r}: expected a task, a Dataset or FeatureHandler "
        "config (with kwargs.handler or kwargs.data), or {'synthetic': {...}}"
    )


def _business_days(after: pd.Timestamp, periods: int) -> pd.DatetimeIndex:
    start = after.normalize() + pd.Timedelta(days=1)
    return pd.bdate_range(start, periods=periods).as_unit("ns")


class TimeAdjuster:
    """Aligns and shifts dates on a trading calendar (Qlib's ``TimeAdjuster``).

    Indexes count trading days from the calendar's first day. ``future=True`` continues the
    data's calendar with business days, without end unless ``end_time`` bounds it; on a bounded
    calendar, points past the end behave as in Qlib (``get`` returns None, :meth:`shift` drops
    an end to None and raises for a start).

    Args:
        calendar: any source :func:`trading_calendar` accepts; None is a plain business-day
            calendar from 1990-01-01 up to today.
        future: continue past the last data date with business days.
        end_time: last day of the calendar (None: the data's end, or unbounded if ``future``).
    """

    SHIFT_SD = "sliding"
    SHIFT_EX = "expanding"

    def __init__(self, calendar: Any = None, future: bool = True, end_time: Any = None) -> None:
        if calendar is None:
            today = pd.Timestamp.today().normalize()
            self._data = pd.bdate_range(DEFAULT_START, today).as_unit("ns")
        else:
            self._data = trading_calendar(calendar)
        self._future = bool(future)
        self.set_end_time(end_time)

    def set_end_time(self, end_time: Any = None) -> None:
        """Bound the calendar at ``end_time`` (None: the data's end, or unbounded if future)."""
        end = None if end_time is None else _stamp(end_time, "end_time")
        data = self._data if end is None else self._data[self._data <= end]
        if data.empty:
            raise InvalidInputError(
                f"end_time {end:%Y-%m-%d} is before the calendar's first day "
                f"{self._data[0]:%Y-%m-%d}; pass a later end_time or None"
            )
        self.data_end: pd.Timestamp = data[-1]  # the last date that really is in the data
        if end is not None and self._future and end > data[-1]:
            extra = pd.bdate_range(data[-1] + pd.Timedelta(days=1), end).as_unit("ns")
            data = data.append(extra)
        self.cals: pd.DatetimeIndex = data
        self._open = self._future and end is None

    def _grow(self, periods: int) -> None:
        extra = _business_days(self.cals[-1], max(periods, _CHUNK))
        self.cals = self.cals.append(extra)

    def _cover(self, stamp: pd.Timestamp) -> None:
        """Materialise future days until the calendar reaches ``stamp``."""
        while self._open and self.cals[-1] < stamp:
            self._grow(int(np.busday_count(self.cals[-1].date(), stamp.date())) + 1)

    def get(self, idx: int | None) -> pd.Timestamp | None:
        """The date at calendar index ``idx``; None for None or past a bounded calendar."""
        if idx is None:
            return None
        idx = int(idx)
        if idx < 0:
            raise CalendarRangeError(
                f"calendar index {idx} is before the first day {self.cals[0]:%Y-%m-%d}; "
                "use a later date or a calendar that starts earlier"
            )
        if idx >= len(self.cals):
            if not self._open:
                return None
            self._grow(idx + 1 - len(self.cals))
        return self.cals[idx]

    def max(self) -> pd.Timestamp:
        """The calendar's last day; for an unbounded calendar, the data's last date."""
        return self.data_end if self._open else self.cals[-1]

    def align_idx(self, time_point: Any, tp_type: str = "start") -> int | None:
        """Index of ``time_point`` aligned to a trading day (None passes through).

        ``"start"`` takes the first trading day on or after it, ``"end"`` the last one on or
        before it. Like Qlib, the result may be -1 (``"end"`` before the first day) or the
        calendar's length (``"start"`` past a bounded calendar).
        """
        if tp_type not in ("start", "end"):
            raise InvalidInputError(f"tp_type must be 'start' or 'end', got {tp_type!r}")
        if time_point is None:
            return None
        stamp = _stamp(time_point, "time_point")
        self._cover(stamp)
        if tp_type == "start":
            return int(self.cals.searchsorted(stamp, side="left"))
        return int(self.cals.searchsorted(stamp, side="right")) - 1

    def cal_interval(self, time_point_A: Any, time_point_B: Any) -> int:
        """Trading days from ``time_point_B`` to ``time_point_A`` (A - B, both aligned "start")."""
        if time_point_A is None or time_point_B is None:
            raise InvalidInputError(
                f"cal_interval({time_point_A!r}, {time_point_B!r}): an open (None) end has no "
                "position on the calendar; compare dates only"
            )
        return self.align_idx(time_point_A) - self.align_idx(time_point_B)

    def align_time(self, time_point: Any, tp_type: str = "start") -> pd.Timestamp | None:
        """``time_point`` moved to a trading day (see :meth:`align_idx`); None stays None."""
        idx = self.align_idx(time_point, tp_type)
        if idx is None:
            return None
        if idx < 0:
            raise CalendarRangeError(
                f"no trading day on or before {time_point}: the calendar starts "
                f"{self.cals[0]:%Y-%m-%d}; use a later date"
            )
        if idx >= len(self.cals):
            raise CalendarRangeError(
                f"no trading day on or after {time_point}: the calendar ends "
                f"{self.cals[-1]:%Y-%m-%d}; use future=True or a later end_time"
            )
        return self.cals[idx]

    def align_seg(self, segment: Any) -> Any:
        """A ``(start, end)`` pair aligned inwards to trading days (start forward, end back),
        or a dict of them (recursively). None ends stay None."""
        if isinstance(segment, Mapping):
            return {k: self.align_seg(seg) for k, seg in segment.items()}
        start, end = _pair(segment)
        return self.align_time(start, "start"), self.align_time(end, "end")

    def truncate(self, segment: Any, test_start: Any, days: int) -> tuple[Any, Any]:
        """``segment`` with no point later than ``days`` trading days before ``test_start``.

        An open start stays open; an open end becomes the cut-off day. The end point is aligned
        ``"end"`` (Qlib aligns it ``"start"``, which moves an unaligned end forward).
        """
        if test_start is None:
            raise InvalidInputError("truncate: test_start is None; pass the test segment's start")
        start, end = _pair(segment)
        cut = self.align_idx(test_start) - int(days)
        if cut < 0:
            raise CalendarRangeError(
                f"truncate: {days} trading days before {test_start} is before the calendar's "
                f"first day {self.cals[0]:%Y-%m-%d}; start the test segment later"
            )
        new_start = None if start is None else self.get(min(self.align_idx(start), cut))
        new_end = self.get(cut if end is None else min(self.align_idx(end, "end"), cut))
        return new_start, new_end

    def shift(self, seg: Any, step: int, rtype: str = SHIFT_SD) -> tuple[Any, Any]:
        """``seg`` moved ``step`` trading days: both ends (``"sliding"``) or only the end
        (``"expanding"``). None ends stay None.

        Raises:
            CalendarRangeError: (a ``KeyError``, as Qlib) the new start is off the calendar. A
                new end past a bounded calendar becomes None (open), as in Qlib.
        """
        if rtype not in (self.SHIFT_SD, self.SHIFT_EX):
            raise InvalidInputError(f"rtype must be 'sliding' or 'expanding', got {rtype!r}")
        start, end = _pair(seg)
        start_idx, end_idx = self.align_idx(start, "start"), self.align_idx(end, "end")
        if start_idx is not None and rtype == self.SHIFT_SD:
            start_idx += step
        if end_idx is not None:
            end_idx += step
        # Qlib lets a start equal to the calendar's length through as None, which then breaks
        # the rolling loop's comparison; any start off the calendar is out of range here.
        bounded = not self._open and start_idx is not None and start_idx >= len(self.cals)
        if bounded or (start_idx is not None and start_idx < 0):
            raise CalendarRangeError(f"segment {seg} shifted by {step} leaves the calendar")
        return self.get(start_idx), self.get(end_idx)


def _pair(segment: Any) -> tuple[Any, Any]:
    if isinstance(segment, (tuple, list)) and len(segment) == 2:
        return segment[0], segment[1]
    raise InvalidInputError(f"a segment must be a (start, end) pair, got {segment!r}")
