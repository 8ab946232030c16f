"""Daily OHLCV into Qlib's provider format, so that ``qlib.init(provider_uri=DIR)`` serves it.

Qlib reads market data from a directory laid out as::

    calendars/day.txt                     one trading date per line (YYYY-MM-DD)
    instruments/all.txt                   CODE<TAB>FIRST DAY<TAB>LAST DAY, one line per code
    instruments/<universe>.txt            the same, for each extra universe
    features/<code, lower case>/<field>.day.bin
                                          little-endian float32: the calendar index of the
                                          code's first day, then one value per calendar day

With it, Qlib's ``D.features``, ``Alpha158``/``Alpha360``, ``DatasetH``, its models and its
backtest run on any DataFrame of prices, without Qlib's download scripts. Alpha158 reads
``open, high, low, close, volume, vwap``; the backtest's exchange also reads ``factor`` and
``change`` (``qlib/backtest/exchange.py``).

Qlib itself is not imported here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError

#: Written from the frame as given (``vwap`` only when the frame has it).
PRICE_FIELDS = ("open", "high", "low", "close", "volume", "vwap")
#: Written for every code: ``factor`` (given, else 1.0) and ``change`` (derived from close).
DERIVED_FIELDS = ("factor", "change")
_REQUIRED = ("open", "high", "low", "close", "volume")
# Qlib renames these codes on disk (``qlib.utils.code_to_fname``): they are device names on
# Windows.
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10))} | {
    f"LPT{i}" for i in range(10)
}


def write_qlib_data(
    frame: pd.DataFrame,
    directory: str | os.PathLike[str],
    *,
    universes: Mapping[str, Iterable[str]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write daily prices into a Qlib provider directory and return its path.

    Args:
        frame: one row per (day, code): columns ``datetime``, ``instrument``, ``open``,
            ``high``, ``low``, ``close``, ``volume`` (or those two as the index, as in
            Qlib's frames), optionally ``vwap`` and ``factor``. Prices are taken as already
            adjusted (Qlib's convention); without a ``factor`` column it is 1.0, i.e. traded
            prices equal these prices. ``change`` is each code's close over its previous
            close, minus one (NaN on its first day). Rows are written as given: missing days
            inside a code's range become NaN, which Qlib treats as suspended.
        directory: the provider directory, created. An existing non-empty one is refused
            unless ``overwrite`` is set and it holds a Qlib calendar; it is then replaced
            whole.
        universes: extra ``instruments/<name>.txt`` files, e.g. ``{"sp500": codes}``; every
            code in them must be in the frame. ``all`` is always written, with every code.

    The directory is built beside the target and moved into place at the end, so a failure
    leaves no half-written provider behind. Raises InvalidInputError for a frame it cannot
    write (missing columns, duplicate rows, codes Qlib cannot store), naming the problem.
    """
    target = Path(directory).expanduser().resolve()
    _check_target(target, overwrite)
    data = _normalise(frame)
    calendar = pd.DatetimeIndex(np.sort(data["datetime"].unique()))
    spans = data.groupby("instrument", sort=True)["datetime"].agg(["min", "max"])
    lists = {"all": list(spans.index)}
    for name, codes in (universes or {}).items():
        lists[_universe_name(name)] = _universe_codes(name, codes, spans.index)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.writing-", dir=target.parent))
    try:
        _write_calendar(staging, calendar)
        for name, codes in lists.items():
            _write_instruments(staging / "instruments" / f"{name}.txt", spans.loc[codes])
        _write_features(staging / "features", data, calendar, spans)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if not overwrite:
        raise InvalidInputError(
            f"{target} already exists and is not empty; pass overwrite=True to replace a Qlib "
            "provider directory, or choose a new directory"
        )
    if not (target / "calendars" / "day.txt").is_file():
        raise InvalidInputError(
            f"{target} is not a Qlib provider directory (no calendars/day.txt); "
            "overwrite only replaces one, choose a new directory"
        )


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as columns datetime, instrument and the fields, sorted, checked."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"frame must be a pandas DataFrame, not {type(frame).__name__}")
    names = [n for n in frame.index.names if n is not None]
    data = frame.reset_index() if {"datetime", "instrument"} & set(names) else frame.copy()
    missing = [c for c in ("datetime", "instrument", *_REQUIRED) if c not in data.columns]
    if missing:
        raise InvalidInputError(
            f"frame lacks column(s) {missing}; it needs datetime, instrument, "
            f"{', '.join(_REQUIRED)} (optional: vwap, factor)"
        )
    if data.empty:
        raise InvalidInputError("frame has no rows; there is nothing to write")
    data["datetime"] = pd.to_datetime(data["datetime"]).dt.normalize()
    data["instrument"] = data["instrument"].astype(str)
    _check_codes(data["instrument"].unique())
    dup = data.duplicated(["datetime", "instrument"])
    if dup.any():
        first = data.loc[dup, ["datetime", "instrument"]].iloc[0]
        raise InvalidInputError(
            f"frame has {int(dup.sum())} duplicate (datetime, instrument) row(s), e.g. "
            f"{first['instrument']} on {first['datetime']:%Y-%m-%d}; keep one row per code and day"
        )
    for column in [c for c in (*PRICE_FIELDS, "factor") if c in data.columns]:
        data[column] = _numeric(data, column)
    data = data.sort_values(["instrument", "datetime"], ignore_index=True)
    if "factor" not in data.columns:
        data["factor"] = 1.0
    previous = data.groupby("instrument", sort=False)["close"].shift(1)
    data["change"] = data["close"] / previous - 1.0
    return data


def _numeric(data: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(data[column], errors="coerce")
    bad = values.isna() & data[column].notna()
    if bad.any():
        row = data.loc[bad].iloc[0]
        raise InvalidInputError(
            f"column {column!r} holds {int(bad.sum())} non-numeric value(s), e.g. "
            f"{row[column]!r} for {row['instrument']} on {row['datetime']:%Y-%m-%d}; "
            "use numbers (NaN for missing)"
        )
    return values.astype("float64")


def _check_codes(codes: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for code in codes:
        if not code or any(c in code for c in "\t\n\r/\\\x00") or code in (".", ".."):
            raise InvalidInputError(
                f"instrument code {code!r} cannot be a Qlib file name (empty, '.', '..', or "
                "holds a tab, newline or slash); rename it"
            )
        other = seen.setdefault(_folder(code), code)
        if other != code:
            raise InvalidInputError(
                f"instrument codes {other!r} and {code!r} differ only in case; Qlib stores "
                "features by lower-case code, so rename one"
            )


def _folder(code: str) -> str:
    return ("_qlib_" + code if code.upper() in _RESERVED else code).lower()


def _universe_name(name: str) -> str:
    if not name or name.lower() == "all" or any(c in name for c in "/\\\x00\t\n."):
        raise InvalidInputError(
            f"universe name {name!r} must be a plain file name other than 'all' (written "
            "for every code)"
        )
    return name.lower()  # Qlib opens instruments/<market.lower()>.txt


def _universe_codes(name: str, codes: Iterable[str], known: pd.Index) -> list[str]:
    codes = sorted({str(c) for c in codes})
    unknown = [c for c in codes if c not in known]
    if unknown or not codes:
        detail = f"codes not in the frame: {unknown[:5]}" if unknown else "no codes"
        raise InvalidInputError(f"universe {name!r} has {detail}")
    return codes


def _write_calendar(root: Path, calendar: pd.DatetimeIndex) -> None:
    (root / "calendars").mkdir()
    (root / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in calendar))


def _write_instruments(path: Path, spans: pd.DataFrame) -> None:
    path.parent.mkdir(exist_ok=True)
    lines = (f"{code}\t{s:%Y-%m-%d}\t{e:%Y-%m-%d}\n" for code, s, e in spans.itertuples())
    path.write_text("".join(lines))


def _write_features(
    root: Path, data: pd.DataFrame, calendar: pd.DatetimeIndex, spans: pd.DataFrame
) -> None:
    fields = [f for f in PRICE_FIELDS if f in data.columns] + list(DERIVED_FIELDS)
    # One wide float32 table (calendar x code) per field; each code's file is a slice of it.
    wide = {
        f: data.pivot(index="datetime", columns="instrument", values=f)
        .reindex(index=calendar, columns=spans.index)
        .to_numpy(dtype="<f4")
        for f in fields
    }
    first = calendar.get_indexer(spans["min"])
    last = calendar.get_indexer(spans["max"])
    for col, code in enumerate(spans.index):
        folder = root / _folder(code)
        folder.mkdir(parents=True)
        start, stop = first[col], last[col] + 1
        for f in fields:
            values = np.concatenate([np.array([start], dtype="<f4"), wide[f][start:stop, col]])
            values.tofile(folder / f"{f}.day.bin")


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old)
