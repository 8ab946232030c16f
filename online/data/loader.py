"""Daily OHLCV panels: a strict loader for Parquet/CSV files and a seeded synthetic market.

Both return the same format (Qlib's): float columns ``open, high, low, close, volume`` indexed
by a sorted ``(datetime, instrument)`` MultiIndex, datetimes as ``datetime64[ns]`` Timestamps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError

KEYS = ("datetime", "instrument")
PRICES = ("open", "high", "low", "close")
FIELDS = (*PRICES, "volume")
COLUMNS = (*KEYS, *FIELDS)
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz")
_SHOW = 5  # how many offending keys an error message lists


def load_ohlcv(
    path: str | os.PathLike[str],
    start: Any = None,
    end: Any = None,
    instruments: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Load a daily panel from Parquet or CSV (chosen by the file suffix).

    The file needs the columns ``datetime, instrument, open, high, low, close, volume``
    (others are ignored), rows sorted by ``(datetime, instrument)`` with no duplicate key
    (an unsorted file is rejected, not sorted: it usually means a broken export).
    ``start``/``end`` (inclusive) and ``instruments`` filter after validation. Raises
    :class:`~tracker.errors.InvalidInputError` naming the file, the problem and the fix.
    """
    source = os.fspath(path)
    file = Path(source)
    if not file.is_file():
        raise InvalidInputError(
            f"{source}: file not found; pass the path of a Parquet or CSV OHLCV file"
        )
    name = file.name.lower()
    if name.endswith(_PARQUET):
        raw = _read_parquet(file, source)
    elif name.endswith(_CSV):
        raw = _read_csv(file, source)
    else:
        raise InvalidInputError(
            f"{source}: unknown file type; use a {', '.join(_PARQUET + _CSV)} file"
        )
    return select_panel(validate_ohlcv(raw, source), start, end, instruments)


def _read_parquet(file: Path, source: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(file).names
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InvalidInputError(f"{source}: not a readable Parquet file ({e})") from e
    _check_columns(names, source)
    return pd.read_parquet(file, columns=list(COLUMNS))


def _read_csv(file: Path, source: str) -> pd.DataFrame:
    try:
        names = list(pd.read_csv(file, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise InvalidInputError(
            f"{source}: the file is empty; it needs a header {','.join(COLUMNS)} and data rows"
        ) from None
    _check_columns(names, source)
    return pd.read_csv(file, usecols=list(COLUMNS), dtype={"instrument": str})


def _check_columns(names: Iterable[str], source: str) -> None:
    missing = [c for c in COLUMNS if c not in set(names)]
    if missing:
        raise InvalidInputError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(names)}); "
            f"rename the columns to {', '.join(COLUMNS)}"
        )


def validate_ohlcv(df: pd.DataFrame, source: str = "DataFrame") -> pd.DataFrame:
    """Check a flat OHLCV frame (or one indexed by ``(datetime, instrument)``) as
    :func:`load_ohlcv` does and return it flat and clean: ``datetime64[ns]`` dates, string
    instruments, float64 fields. ``source`` names the data in error messages, whose row
    numbers count data rows from 0 (CSV line = row + 2)."""
    if set(KEYS) <= set(df.index.names):
        df = df.reset_index()
    _check_columns(df.columns, source)
    if len(df) == 0:
        raise InvalidInputError(f"{source}: the file is empty (no data rows); add OHLCV rows")
    try:
        dt = pd.to_datetime(df["datetime"])
        if isinstance(dt.dtype, pd.DatetimeTZDtype):
            dt = dt.dt.tz_localize(None)  # keep the local trading date
        dt = dt.astype("datetime64[ns]")
    except (ValueError, TypeError) as e:
        raise InvalidInputError(
            f"{source}: column datetime does not parse as dates ({e}); write ISO dates"
        ) from e
    inst = df["instrument"]
    if dt.isna().any() or inst.isna().any():
        row = int(np.flatnonzero(dt.isna().to_numpy() | inst.isna().to_numpy())[0])
        raise InvalidInputError(
            f"{source}: row {row} has an empty datetime or instrument; every row needs both"
        )
    inst = inst.astype(str)
    out = pd.DataFrame({"datetime": dt, "instrument": inst})
    for col in FIELDS:
        out[col] = _numeric(df[col], col, source)
    _check_keys(out, source)
    return out


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col) or not (
        pd.api.types.is_numeric_dtype(col)
        or col.dtype == object
        or pd.api.types.is_string_dtype(col)
    ):
        raise InvalidInputError(f"{source}: column {name} is {col.dtype}, not numeric")
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:_SHOW]
        shown = ", ".join(f"row {r}: {col.iloc[r]!r}" for r in rows)
        raise InvalidInputError(
            f"{source}: column {name} is not numeric ({int(bad.sum())} bad value(s), e.g. "
            f"{shown}); write numbers (leave missing values empty)"
        )
    return values.astype("float64")


def _check_keys(df: pd.DataFrame, source: str) -> None:
    """No duplicate ``(datetime, instrument)`` key, rows in key order (not silently sorted:
    an unsorted file usually means a broken export, which the user should know about)."""
    d_codes, _ = pd.factorize(df["datetime"], sort=True)
    i_codes, uniques = pd.factorize(df["instrument"], sort=True)
    key = d_codes.astype(np.int64) * len(uniques) + i_codes
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = df.loc[dup, list(KEYS)].drop_duplicates().head(_SHOW)
        shown = ", ".join(f"({d:%Y-%m-%d}, {i})" for d, i in rows.itertuples(index=False))
        raise InvalidInputError(
            f"{source}: {int(dup.sum())} rows share a duplicate (datetime, instrument) key, "
            f"e.g. {shown}; keep one row per instrument and day"
        )
    back = np.flatnonzero(np.diff(key) < 0)
    if len(back):
        row = int(back[0]) + 1
        here, prev = df.iloc[row], df.iloc[row - 1]
        raise InvalidInputError(
            f"{source}: not sorted by (datetime, instrument): row {row} "
            f"({here['datetime']:%Y-%m-%d}, {here['instrument']}) comes after row {row - 1} "
            f"({prev['datetime']:%Y-%m-%d}, {prev['instrument']}); sort it first, e.g. "
            f"df.sort_values(['datetime', 'instrument'])"
        )


def select_panel(
    df: pd.DataFrame,
    start: Any = None,
    end: Any = None,
    instruments: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """A flat frame from :func:`validate_ohlcv`, filtered (dates inclusive; ``instruments``
    None or ``"all"`` keeps all) and indexed by ``(datetime, instrument)``."""
    keep = np.ones(len(df), dtype=bool)
    if start is not None:
        keep &= (df["datetime"] >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (df["datetime"] <= pd.Timestamp(end)).to_numpy()
    if instruments is not None and not isinstance(instruments, str):
        keep &= df["instrument"].isin(list(instruments)).to_numpy()
    elif isinstance(instruments, str) and instruments != "all":
        keep &= (df["instrument"] == instruments).to_numpy()
    df = df.loc[keep] if not keep.all() else df
    index = pd.MultiIndex.from_arrays([df["datetime"], df["instrument"]], names=list(KEYS))
    return pd.DataFrame({c: df[c].to_numpy() for c in FIELDS}, index=index)


def simulate_market(
    n_instruments: int = 100,
    n_days: int = 500,
    seed: int = 0,
    signal: float = 0.05,
    start: Any = "2020-01-01",
) -> tuple[pd.DataFrame, pd.Series]:
    """The synthetic market of :func:`make_synthetic_market` and its latent factor ``z``
    (a Series on the same index), for checking that a model finds the planted signal."""
    if n_instruments < 1 or n_days < 3:
        raise InvalidInputError("synthetic market: need n_instruments >= 1 and n_days >= 3")
    if not -1.0 < signal < 1.0:
        raise InvalidInputError(f"synthetic market: signal must be in (-1, 1), got {signal}")
    rng = np.random.default_rng(seed)
    n, t, phi = n_instruments, n_days, 0.9
    beta = rng.uniform(0.5, 1.5, n)
    sigma = rng.uniform(0.01, 0.03, n)
    price0 = np.exp(rng.normal(np.log(50.0), 0.7, n))
    level = rng.normal(np.log(1e6), 0.8, n)
    market = rng.normal(0.0003, 0.01, t)
    # z is a stationary AR(1) with unit variance: persistent over a few days.
    shocks = rng.standard_normal((t, n))
    z = np.empty((t, n))
    z[0] = shocks[0]
    for day in range(1, t):
        z[day] = phi * z[day - 1] + np.sqrt(1 - phi**2) * shocks[day]
    noise = rng.standard_normal((t, n))
    ret = beta * market[:, None] + sigma * (
        signal * np.roll(z, 1, axis=0) + np.sqrt(1 - signal**2) * noise
    )
    ret[0] = 0.0  # np.roll wrapped z[-1] into day 0; the first day only sets the level
    close = price0 * np.exp(np.cumsum(ret, axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    opened = prev * np.exp(rng.normal(0.0, 0.3, (t, n)) * sigma)
    high = np.maximum(opened, close) * np.exp(np.abs(rng.normal(0.0, 0.5, (t, n))) * sigma)
    low = np.minimum(opened, close) * np.exp(-np.abs(rng.normal(0.0, 0.5, (t, n))) * sigma)
    log_volume = level + 0.5 * z + 0.3 * rng.standard_normal((t, n)) + 5.0 * np.abs(ret)
    volume = np.maximum(np.round(np.exp(log_volume)), 1.0)
    dates = pd.bdate_range(pd.Timestamp(start), periods=t).astype("datetime64[ns]")
    width = len(str(n - 1))
    names = [f"SYN{i:0{width}d}" for i in range(n)]
    index = pd.MultiIndex.from_product([dates, names], names=list(KEYS))
    columns = {"open": opened, "high": high, "low": low, "close": close, "volume": volume}
    frame = pd.DataFrame({k: v.ravel() for k, v in columns.items()}, index=index)
    return frame, pd.Series(z.ravel(), index=index, name="z")


def make_synthetic_market(
    n_instruments: int = 100,
    n_days: int = 500,
    seed: int = 0,
    signal: float = 0.05,
    start: Any = "2020-01-01",
) -> pd.DataFrame:
    """A seeded synthetic daily market in the :func:`load_ohlcv` format.

    Generative model, on a business-day calendar from ``start`` (``i`` instrument, ``t`` day):

    - a latent factor ``z[i,t]``: a stationary AR(1), ``z[t] = 0.9 z[t-1] + sqrt(0.19) u``,
      ``u ~ N(0, 1)`` (unit variance, half-life about 6.6 days);
    - log close-to-close returns ``r[i,t] = beta_i m_t + sigma_i (signal z[i,t-1] +
      sqrt(1 - signal**2) e[i,t])`` with market ``m_t ~ N(0.0003, 0.01)``,
      ``beta_i ~ U(0.5, 1.5)``, ``sigma_i ~ U(0.01, 0.03)``, ``e ~ N(0, 1)``;
      ``close = close_0 exp(cumsum r)``, ``close_0`` log-normal around 50;
    - ``z`` is observable from volume: ``log volume[i,t] = level_i + 0.5 z[i,t] + 0.3 N(0, 1) +
      5 |r[i,t]|`` (``level_i ~ N(log 1e6, 0.8)``), rounded to whole shares (at least 1). So
      unusually high volume against the recent average (low ``VMA``/``VSTD`` features) predicts
      higher returns over the next days: the correlation of ``z[t]`` with the label
      ``close[t+2]/close[t+1] - 1`` is about ``0.9 * signal`` (before the market term's noise).
      ``signal=0`` makes returns unpredictable;
    - ``open = close[t-1] exp(0.3 sigma_i N(0, 1))``; ``high``/``low`` extend ``max``/``min(open,
      close)`` by ``exp(+-0.5 sigma_i |N(0, 1)|)``, so prices are positive and the bars consistent.

    Instruments are named ``SYN000``… Deterministic for a given ``seed`` (one numpy Generator).
    :func:`simulate_market` also returns ``z``.
    """
    return simulate_market(n_instruments, n_days, seed, signal, start)[0]


def write_synthetic_market(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`make_synthetic_market` (``kwargs``) to ``path`` as Parquet, or CSV when the
    suffix is ``.csv``, in the flat file layout :func:`load_ohlcv` reads. Returns the path."""
    out = Path(path)
    frame = make_synthetic_market(**kwargs).reset_index()
    if out.name.lower().endswith(_CSV):
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return out
