"""Alpha158-style features and Qlib's default label from a daily OHLCV panel.

Features (Qlib's names; ``o h l c v`` are the day's bars, ``c[-k]`` the close ``k`` rows
earlier, ``eps = 1e-12``, rolling statistics over the last ``w`` days ending today, std with
ddof=1):

- K-bar: ``KMID (c-o)/o``, ``KLEN (h-l)/o``, ``KMID2 (c-o)/(h-l+eps)``,
  ``KUP (h-max(o,c))/o``, ``KUP2 (h-max(o,c))/(h-l+eps)``, ``KLOW (min(o,c)-l)/o``,
  ``KLOW2 (min(o,c)-l)/(h-l+eps)``, ``KSFT (2c-h-l)/o``, ``KSFT2 (2c-h-l)/(h-l+eps)``;
- price: ``OPEN0 o/c``, ``HIGH0 h/c``, ``LOW0 l/c``;
- for each window ``w``: ``ROCw c[-w]/c``; ``MAw mean(c)/c``; ``STDw std(c)/c``;
  ``BETAw slope(c on time)/c``; ``RSQRw`` the R^2 of that regression; ``MAXw max(h)/c``;
  ``MINw min(l)/c``; ``RSVw (c-min(l))/(max(h)-min(l)+eps)``; ``CORRw corr(c, log(v+1))``;
  ``CNTDw mean(c>c[-1]) - mean(c<c[-1])``; ``SUMDw sum(c-c[-1])/(sum|c-c[-1]|+eps)``;
  ``VMAw mean(v)/(v+eps)``; ``VSTDw std(v)/(v+eps)``; ``VSUMDw sum(v-v[-1])/(sum|v-v[-1]|+eps)``.

Label: ``LABEL0 = c[t+2]/c[t+1] - 1`` per instrument on the market calendar (the union of the
file's dates): if the instrument has no row, or a NaN close, on ``t+1`` or ``t+2``, the label
is NaN. Labels are never repaired, clipped or normalised (see ``label_norm``).

Bad ticks, before any feature: a NaN ``open``/``high``/``low`` becomes that day's close (a flat
bar; four such rows in the S&P file are non-trading days with zero volume); then every field is
forward-filled within the instrument over NaN values and calendar days it has no row for (a
halt repeats the last bar); then ``high``/``low`` are widened to ``max``/``min`` of the four
prices, which also mends ``high < low`` rows. Zero volumes are kept (``VMA``/``VSTD`` become
huge and clip at +3 after normalisation). Infinite inputs and features become NaN.

Warm-up and NaN policy: a rolling feature is NaN until the instrument has ``w`` (``ROC``,
``CNTD``, ``SUMD``, ``VSUMD``: ``w + 1``) days of history (Qlib uses partial windows); those
rows are KEPT, as in Qlib.
With ``normalize=True`` (default) every feature is, per day over the instruments that have a
row that day, robust-z-scored ``(x - median) / (1.4826 * (MAD + eps))``, clipped to [-3, 3],
and NaN then becomes 0 (the day's median). With ``normalize=False`` features are raw, NaN kept.
Rows with a NaN label are kept by :meth:`FeatureHandler.fetch` (they are predictable);
training code drops them with :func:`dropna_label`.

Features are float32 (as Qlib stores them), the label float64.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError
from tracker.online.data.loader import (
    PRICES,
    load_ohlcv,
    make_synthetic_market,
    select_panel,
    validate_ohlcv,
)

EPS = 1e-12
LABEL = "LABEL0"
KBAR = ("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2")
PRICE = ("OPEN0", "HIGH0", "LOW0")
ROLLING = ("ROC", "MA", "STD", "BETA", "RSQR", "MAX", "MIN", "RSV", "CORR", "CNTD", "SUMD")
ROLLING += ("VMA", "VSTD", "VSUMD")
GROUPS = ("feature", "label")


def feature_names(windows: Iterable[int] = (5, 10, 20, 30, 60)) -> list[str]:
    """The feature columns in order: K-bar, price, then each rolling family over the windows."""
    return [*KBAR, *PRICE, *(f"{op}{w}" for op in ROLLING for w in windows)]


# --- wide (instrument x datetime) array helpers: time runs along axis 1, which is contiguous,
# so cumulative sums and scans are several times faster than down the columns of (T, N).


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` moved ``k`` days later (``k < 0``: earlier) along time, NaN-padded."""
    out = np.full_like(x, np.nan)
    t = x.shape[1]
    if 0 < k < t:
        out[:, k:] = x[:, :-k]
    elif -t < k < 0:
        out[:, :k] = x[:, -k:]
    return out


def _ffill(x: np.ndarray) -> np.ndarray:
    cols = np.where(np.isnan(x), 0, np.arange(x.shape[1]))
    np.maximum.accumulate(cols, axis=1, out=cols)
    return np.take_along_axis(x, cols, axis=1)


def _centre(x: np.ndarray) -> np.ndarray:
    # Cumulative sums lose precision on large levels; the statistics below are shift-invariant.
    valid = ~np.isnan(x)
    ref = np.where(valid, x, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return x - ref[:, None]


class _Rolling:
    """Rolling sums of one (instrument x day) array over any window, from a single cumulative
    sum along time. A window's sum is NaN unless all its ``w`` values are present."""

    def __init__(self, x: np.ndarray) -> None:
        n, t = x.shape
        valid = ~np.isnan(x)
        self.sums = np.zeros((n, t + 1))
        np.cumsum(np.where(valid, x, 0.0), axis=1, out=self.sums[:, 1:])
        first = np.where(valid.any(axis=1), valid.argmax(axis=1), t)
        self.first: np.ndarray | None = first
        if not np.array_equal(valid.sum(axis=1), t - first):
            # Gaps after the first value: count values per window (slower, rarely needed,
            # since the inputs are forward-filled and NaN only before an instrument starts).
            self.first = None
            self.counts = np.zeros((n, t + 1), dtype=np.int32)
            np.cumsum(valid, axis=1, out=self.counts[:, 1:])

    def __call__(self, w: int) -> np.ndarray:
        n, t = self.sums.shape[0], self.sums.shape[1] - 1
        out = np.full((n, t), np.nan)
        if self.first is not None:
            full = np.arange(t - w + 1) >= self.first[:, None]
        else:
            full = self.counts[:, w:] - self.counts[:, :-w] == w
        out[:, w - 1 :] = np.where(full, self.sums[:, w:] - self.sums[:, :-w], np.nan)
        return out


def _ss(s1: _Rolling, s2: _Rolling, w: int) -> np.ndarray:
    """Sum of squared deviations in each window, from rolling sums of ``x`` and ``x**2``."""
    s = s1(w)
    return np.maximum(s2(w) - s * s / w, 0.0)


def _flat(ss: np.ndarray, w: int) -> np.ndarray:
    # As Qlib's Corr/Rsquare: undefined when a side is (numerically) constant in the window.
    return ss / (w - 1) < 4e-10


def _rext(x: np.ndarray, w: int, op: np.ufunc) -> np.ndarray:
    """Rolling max/min (``op`` = np.maximum/np.minimum) over ``w`` days, NaN if a value is
    missing, in O(1) per value: block prefix and suffix scans (van Herk / Gil-Werman)."""
    n, t = x.shape
    out = np.full(x.shape, np.nan)
    if w > t:
        return out
    blocks = -(-t // w)
    padded = np.pad(x, ((0, 0), (0, blocks * w - t)), constant_values=np.nan)
    padded = padded.reshape(n, blocks, w)
    prefix = op.accumulate(padded, axis=2).reshape(n, -1)
    suffix = op.accumulate(padded[:, :, ::-1], axis=2)[:, :, ::-1].reshape(n, -1)
    out[:, w - 1 :] = op(suffix[:, : t - w + 1], prefix[:, w - 1 : t])
    return out


def _features(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    windows: Sequence[int],
) -> Iterator[np.ndarray]:
    """Yield the raw feature arrays in :func:`feature_names` order. All inputs share one NaN
    pattern: NaN only before an instrument's first bar."""
    rng = h - lo + EPS
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    yield from ((c - o) / o, (h - lo) / o, (c - o) / rng, (h - top) / o, (h - top) / rng)
    yield from ((bottom - lo) / o, (bottom - lo) / rng, (2 * c - h - lo) / o)
    yield from ((2 * c - h - lo) / rng, o / c, h / c, lo / c)
    del rng, top, bottom  # the generator lives long: free what is done with (here and below)
    # Sums of squares from cumulative sums cancel badly on raw price levels: centre each
    # instrument's series first (the statistics are shift-invariant; means add the shift back).
    cc, vc, lv = _centre(c), _centre(v), _centre(np.log(v + 1))
    s_c, s_cc = _Rolling(cc), _Rolling(cc * cc)

    yield from (_shift(c, w) / c for w in windows)
    yield from ((s_c(w) / w + (c - cc)) / c for w in windows)
    yield from (np.sqrt(_ss(s_c, s_cc, w) / (w - 1)) / c for w in windows)
    # Slope and R^2 of close on time; sum((t - mean t)^2) over w consecutive days is w(w^2-1)/12.
    t = np.where(np.isnan(c), np.nan, np.arange(c.shape[1]) - c.shape[1] / 2)
    s_t, s_tc = _Rolling(t), _Rolling(t * cc)
    covs = {w: s_tc(w) - s_t(w) * s_c(w) / w for w in windows}
    yield from (covs[w] / (w * (w * w - 1) / 12) / c for w in windows)
    for w in windows:
        ss = _ss(s_c, s_cc, w)
        yield np.where(_flat(ss, w), np.nan, covs.pop(w) ** 2 / (w * (w * w - 1) / 12 * ss))
    del t, s_t, s_tc
    highs = {w: _rext(h, w, np.maximum) for w in windows}
    lows = {w: _rext(lo, w, np.minimum) for w in windows}
    yield from (highs[w] / c for w in windows)
    yield from (lows[w] / c for w in windows)
    yield from ((c - lows[w]) / (highs[w] - lows[w] + EPS) for w in windows)
    del highs, lows
    s_l, s_ll, s_cl = _Rolling(lv), _Rolling(lv * lv), _Rolling(cc * lv)
    for w in windows:
        sx, sy, ss_x, ss_y = s_c(w), s_l(w), _ss(s_c, s_cc, w), _ss(s_l, s_ll, w)
        corr = (s_cl(w) - sx * sy / w) / np.sqrt(ss_x * ss_y)
        yield np.where(_flat(ss_x, w) | _flat(ss_y, w), np.nan, corr)
    del s_l, s_ll, s_cl, s_c, s_cc, cc, lv
    dc = c - _shift(c, 1)
    s_up, s_dc, s_adc = _Rolling(np.sign(dc)), _Rolling(dc), _Rolling(np.abs(dc))
    yield from (s_up(w) / w for w in windows)
    yield from (s_dc(w) / (s_adc(w) + EPS) for w in windows)
    del s_up, s_dc, s_adc
    s_v, s_vv = _Rolling(vc), _Rolling(vc * vc)
    yield from ((s_v(w) / w + (v - vc)) / (v + EPS) for w in windows)
    yield from (np.sqrt(_ss(s_v, s_vv, w) / (w - 1)) / (v + EPS) for w in windows)
    del s_v, s_vv, vc
    dv = v - _shift(v, 1)
    s_dv, s_adv = _Rolling(dv), _Rolling(np.abs(dv))
    yield from (s_dv(w) / (s_adv(w) + EPS) for w in windows)


def _row_median(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median of each row's ``n`` non-NaN values (NaN when ``n == 0``)."""
    ordered = np.sort(x, axis=1)  # NaN sorts last
    lo = np.maximum((n - 1) // 2, 0)[:, None]
    hi = np.maximum(n // 2, 0)[:, None]
    both = np.take_along_axis(ordered, lo, 1) + np.take_along_axis(ordered, hi, 1)
    return both[:, 0] / 2


def robust_zscore(x: np.ndarray) -> np.ndarray:
    """Per row (one row per day): ``(x - median) / (1.4826 * (MAD + eps))`` over the non-NaN
    values, clipped to [-3, 3], then NaN -> 0."""
    n = (~np.isnan(x)).sum(axis=1)
    dev = x - _row_median(x, n)[:, None]
    scale = (_row_median(np.abs(dev), n)[:, None] + EPS) * 1.4826
    np.divide(dev, scale, out=dev)
    np.clip(dev, -3.0, 3.0, out=dev)
    return np.nan_to_num(dev, copy=False, nan=0.0)


def compute_features(
    ohlcv: pd.DataFrame,
    windows: Sequence[int] = (5, 10, 20, 30, 60),
    normalize: bool = True,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """The processed frame for an OHLCV panel in the ``load_ohlcv`` format (see the module
    docstring), for rows with ``start <= datetime <= end``: columns ``("feature", name)`` and
    ``("label", "LABEL0")``."""
    if ohlcv.empty:
        raise InvalidInputError("compute_features: the OHLCV panel has no rows")
    index = ohlcv.index.remove_unused_levels()
    n_days, n_inst = len(index.levels[0]), len(index.levels[1])
    d, i = index.codes[0].astype(np.int64), index.codes[1].astype(np.int64)
    by_inst = i * n_days + d  # flat positions in (instrument, day) arrays
    present = np.zeros(n_inst * n_days, dtype=bool)
    present[by_inst] = True
    absent = ~present.reshape(n_inst, n_days)

    def wide(name: str) -> np.ndarray:
        out = np.full(n_inst * n_days, np.nan)
        out[by_inst] = ohlcv[name].to_numpy(dtype=float)
        out[np.isinf(out)] = np.nan  # an infinite price or volume is a bad tick
        return out.reshape(n_inst, n_days)

    close_raw = wide("close")
    o, h, lo = (_ffill(np.where(np.isnan(x), close_raw, x)) for x in map(wide, PRICES[:3]))
    c, v = _ffill(close_raw), _ffill(wide("volume"))
    h, lo = np.fmax(np.fmax(h, lo), np.fmax(o, c)), np.fmin(np.fmin(h, lo), np.fmin(o, c))
    # One NaN pattern for all bars (NaN only before an instrument's first complete bar).
    missing = np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v)
    for bar in (o, h, lo, c, v):
        bar[missing] = np.nan

    dt = index.get_level_values(0)
    first = 0 if start is None else dt.searchsorted(pd.Timestamp(start), side="left")
    last = len(dt) if end is None else dt.searchsorted(pd.Timestamp(end), side="right")
    by_inst = by_inst[first:last]
    by_day = d[first:last] * n_inst + i[first:last]  # flat positions in (day, instrument)
    names = feature_names(windows)
    out = np.empty((len(by_inst), len(names)), dtype=np.float32, order="F")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for col, x in enumerate(_features(o, h, lo, c, v, windows)):
            np.copyto(x, np.nan, where=absent | ~np.isfinite(x))
            if normalize:
                # float32 halves the sorting work; z-scores in [-3, 3] need no more.
                days = x.T.astype(np.float32, order="C")
                out[:, col] = robust_zscore(days).reshape(-1)[by_day]
            else:
                out[:, col] = x.reshape(-1)[by_inst]
        label = (_shift(close_raw, -2) / _shift(close_raw, -1) - 1).reshape(-1)[by_inst]
    label[~np.isfinite(label)] = np.nan
    columns = pd.MultiIndex.from_tuples([("feature", n) for n in names])
    frame = pd.DataFrame(out, index=index[first:last], columns=columns, copy=False)
    frame[("label", LABEL)] = label
    return frame


def dropna_label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the rows whose label is NaN (Qlib's ``DropnaLabel``, for training).
    Works on the two-level frame and on a ``col_set="label"`` frame."""
    if isinstance(df.columns, pd.MultiIndex) and "label" in df.columns.get_level_values(0):
        labels = df["label"]
    elif LABEL in df.columns:
        labels = df[[LABEL]]
    else:
        raise InvalidInputError("dropna_label: the frame has no label column; fetch the label")
    return df.loc[labels.notna().all(axis=1).to_numpy()]


def _cs_zscore(label: pd.Series) -> pd.Series:
    by_day = label.groupby(level="datetime")
    return (label - by_day.transform("mean")) / by_day.transform("std")


class FeatureHandler:
    """Features and label of a daily panel, fetched by date range and column group (Qlib's
    ``DataHandlerLP`` with the Alpha158 processors; see the module docstring for the formulas
    and the NaN policy).

    ``data`` is a Parquet/CSV path (read with :func:`load_ohlcv`), a DataFrame in
    that format, or ``{"synthetic": {make_synthetic_market kwargs}}``. Features are computed
    on the whole panel (so windows and the label see data outside ``start_time..end_time``)
    and kept for that range. ``instruments`` restricts the universe (it also changes the
    cross-section the features are normalised over). ``fit_start_time``/``fit_end_time`` are
    accepted for Qlib config compatibility; the cross-sectional processors learn nothing.
    ``label_norm="cszscore"`` z-scores the label per day in the ``"learn"`` data only.

    Computed lazily and cached; pickling keeps only the config (a DataFrame source is kept,
    since there is nothing else to rebuild from) and recomputes on the next fetch.
    """

    DK_I, DK_L, DK_R = "infer", "learn", "raw"

    def __init__(
        self,
        data: str | os.PathLike[str] | pd.DataFrame | Mapping[str, Any],
        start_time: Any = None,
        end_time: Any = None,
        instruments: Iterable[str] | str | None = None,
        windows: Iterable[int] = (5, 10, 20, 30, 60),
        normalize: bool = True,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        label_norm: str = "none",
    ) -> None:
        self.windows = tuple(dict.fromkeys(int(w) for w in windows))
        if not self.windows or min(self.windows) < 2:
            raise InvalidInputError(f"FeatureHandler: windows must be >= 2, got {windows}")
        if label_norm not in ("none", "cszscore"):
            raise InvalidInputError(
                f"FeatureHandler: label_norm must be 'none' or 'cszscore', got {label_norm!r}"
            )
        self.start_time = None if start_time is None else pd.Timestamp(start_time)
        self.end_time = None if end_time is None else pd.Timestamp(end_time)
        if None not in (self.start_time, self.end_time) and self.start_time > self.end_time:
            raise InvalidInputError(
                f"FeatureHandler: start_time {start_time} is after end_time {end_time}"
            )
        if instruments == "all":
            instruments = None
        elif isinstance(instruments, str):
            instruments = [instruments]
        self.instruments = None if instruments is None else list(instruments)
        self.normalize, self.label_norm = bool(normalize), label_norm
        self.fit_start_time, self.fit_end_time = fit_start_time, fit_end_time
        self._source: pd.DataFrame | None = None
        self._path: str | None = None
        if isinstance(data, pd.DataFrame):
            self._source, self.data = validate_ohlcv(data), "<DataFrame>"
        elif isinstance(data, (str, os.PathLike)):
            if not Path(data).is_file():
                raise InvalidInputError(f"FeatureHandler: data file {os.fspath(data)!r} not found")
            self._path, self.data = os.path.abspath(data), os.fspath(data)
        elif isinstance(data, Mapping) and set(data) == {"synthetic"}:
            kwargs = dict(data["synthetic"] or {})
            try:
                inspect.signature(make_synthetic_market).bind(**kwargs)
            except TypeError as e:
                raise InvalidInputError(f"FeatureHandler: data.synthetic: {e}") from None
            self.data = {"synthetic": kwargs}
        else:
            raise InvalidInputError(
                "FeatureHandler: data must be a file path, an OHLCV DataFrame or "
                f"{{'synthetic': {{...}}}}, got {type(data).__name__}"
            )
        self._frames: dict[bool, pd.DataFrame] = {}

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.windows)

    def load(self) -> pd.DataFrame:
        """The OHLCV panel (restricted to ``instruments``), before any repair."""
        if self._path is not None:
            return load_ohlcv(self._path, instruments=self.instruments)
        if self._source is not None:
            df = self._source
        else:
            df = validate_ohlcv(make_synthetic_market(**self.data["synthetic"]), "synthetic")
        panel = select_panel(df, instruments=self.instruments)
        if panel.empty:
            raise InvalidInputError(f"FeatureHandler: no rows for instruments {self.instruments}")
        return panel

    def _frame(self, normalize: bool) -> pd.DataFrame:
        if normalize not in self._frames:
            self._frames[normalize] = compute_features(
                self.load(), self.windows, normalize, self.start_time, self.end_time
            )
        return self._frames[normalize]

    def setup_data(self) -> FeatureHandler:
        """Compute now rather than on the first :meth:`fetch`."""
        self._frame(self.normalize)
        return self

    def fetch(
        self,
        start: Any = None,
        end: Any = None,
        col_set: str | Sequence[str] = "__all",
        data_key: str | None = None,
    ) -> pd.DataFrame:
        """Rows with ``start <= datetime <= end`` (None: open). ``col_set="__all"`` or a list
        of groups keeps the two column levels; ``"feature"``/``"label"`` returns that group
        with single-level columns. ``data_key``: ``"infer"`` (default) or ``"learn"`` (label
        z-scored when ``label_norm="cszscore"``) or ``"raw"`` (unnormalised features)."""
        data_key = data_key or self.DK_I
        if data_key not in (self.DK_I, self.DK_L, self.DK_R):
            raise InvalidInputError(f"fetch: data_key must be infer, learn or raw: {data_key!r}")
        groups = list(GROUPS) if col_set == "__all" else col_set
        groups = [groups] if isinstance(groups, str) else list(groups)
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise InvalidInputError(f"fetch: unknown col_set {unknown}; use feature, label, __all")
        raw = data_key == self.DK_R and self.normalize and "feature" in groups
        frame = self._frame(False if raw else self.normalize)
        dt = frame.index.get_level_values(0)
        first = 0 if start is None else dt.searchsorted(pd.Timestamp(start), side="left")
        last = len(dt) if end is None else dt.searchsorted(pd.Timestamp(end), side="right")
        frame = frame.iloc[first:last]
        if data_key == self.DK_L and self.label_norm == "cszscore" and "label" in groups:
            frame = frame.copy(deep=False)  # copy-on-write: the cached frame stays as it is
            frame[("label", LABEL)] = _cs_zscore(frame[("label", LABEL)])
        if isinstance(col_set, str) and col_set != "__all":
            return frame[col_set]
        return frame if col_set == "__all" else frame[groups]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_frames"] = {}  # saved "without data", as Qlib's dump_all=False
        return state

    def __repr__(self) -> str:
        data = self.data if isinstance(self.data, (str, dict)) else type(self.data).__name__
        return (
            f"FeatureHandler(data={data!r}, start_time={self.start_time}, "
            f"end_time={self.end_time}, windows={self.windows}, normalize={self.normalize})"
        )
