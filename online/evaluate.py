"""Signal and return analysis, as Qlib's ``qlib.contrib.eva.alpha`` and
``qlib.contrib.evaluate.risk_analysis``: pure functions on pandas objects, no tracking.

All per-date functions take Series indexed by ``(datetime, instrument)`` and group on the
``date_col`` level. They are vectorised (one groupby pass, no per-date Python ``apply``) so
that a 500-stock x 5-year panel takes milliseconds; the results equal Qlib's
``groupby(...).apply(...)`` versions, which the tests check.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError

__all__ = [
    "calc_ic",
    "calc_long_short_prec",
    "calc_long_short_return",
    "risk_analysis",
    "safe_div",
]


def _date_level(index: pd.Index, date_col: str) -> str | int:
    """The level to group by: ``date_col`` if the index has it, else the first level."""
    return date_col if date_col in (index.names or []) else 0


def _pearson_by_date(x: pd.Series, y: pd.Series, level: str | int) -> pd.Series:
    """Per-date Pearson correlation of two aligned, NaN-free Series.

    Dates with fewer than two points or a constant side give NaN, as ``Series.corr`` does,
    without numpy's divide-by-zero warnings."""
    gx = x.groupby(level=level, sort=True)
    gy = y.groupby(level=level, sort=True)
    # Constancy is tested exactly (max == min): the demeaned sums of a constant column are
    # rounding noise, not zero, and would give a meaningless correlation.
    degenerate = (gx.max() == gx.min()) | (gy.max() == gy.min()) | (gx.size() < 2)
    dx = x - gx.transform("mean")
    dy = y - gy.transform("mean")
    sxy = (dx * dy).groupby(level=level, sort=True).sum()
    sxx = (dx * dx).groupby(level=level, sort=True).sum()
    syy = (dy * dy).groupby(level=level, sort=True).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sxy / np.sqrt(sxx * syy)
    out[degenerate] = np.nan
    return out.clip(-1.0, 1.0)


def calc_ic(
    pred: pd.Series, label: pd.Series, date_col: str = "datetime", dropna: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Daily IC (Pearson) and Rank IC (Spearman) of ``pred`` against ``label``.

    Rows where either side is NaN are left out per date (pairwise-complete, as
    ``Series.corr``). A date with no usable pair, fewer than two, or a constant side gets
    NaN; with ``dropna`` those dates are removed. Returns ``(ic, ric)`` indexed by date.
    """
    df = pd.DataFrame({"pred": pred, "label": label})
    level = _date_level(df.index, date_col)
    dates = df.index.get_level_values(level).unique().sort_values()
    ok = df.dropna()
    ic = _pearson_by_date(ok["pred"], ok["label"], level).reindex(dates)
    # Spearman = Pearson of the per-date average ranks (ties get the mean rank, as pandas).
    ranked = ok.groupby(level=level).rank(method="average")
    ric = _pearson_by_date(ranked["pred"], ranked["label"], level).reindex(dates)
    if dropna:
        return ic.dropna(), ric.dropna()
    return ic, ric


def _quantile_masks(
    df: pd.DataFrame, level: str | int, quantile: float
) -> tuple[pd.Series, pd.Series]:
    """Masks of the top and bottom ``int(n * quantile)`` rows by ``pred`` per date, ``n``
    being the date's row count (NaN rows included, as Qlib's ``len(x)``). Ties keep the
    first row in order, as ``nlargest``/``nsmallest(keep="first")``."""
    group = df.groupby(level=level, sort=False)
    n = np.floor(group["pred"].transform("size") * quantile).astype(int)
    top_rank = group["pred"].rank(method="first", ascending=False)
    bottom_rank = group["pred"].rank(method="first", ascending=True)
    return top_rank.le(n), bottom_rank.le(n)


def calc_long_short_prec(
    pred: pd.Series,
    label: pd.Series,
    date_col: str = "datetime",
    quantile: float = 0.2,
    dropna: bool = False,
    is_alpha: bool = False,
) -> tuple[pd.Series, pd.Series]:
    """Daily precision of the long and short legs (Qlib's ``calc_long_short_prec``).

    The long leg is the top ``quantile`` by ``pred``; its precision is the share of its
    non-NaN labels that are ``> 0``. The short leg is the bottom ``quantile``; precision is
    the share ``< 0``. ``is_alpha`` first subtracts each date's mean label.
    Raises ValueError, as Qlib, when there are too few instruments for the quantile.
    """
    df = pd.DataFrame({"pred": pred, "label": label})
    level = _date_level(df.index, date_col)
    if is_alpha:
        df["label"] = df["label"] - df.groupby(level=level)["label"].transform("mean")
    if int(1 / quantile) >= df.index.get_level_values(1).nunique():
        raise InvalidInputError("Need more instruments to calculate precision")
    if dropna:
        df = df.dropna()
    top, bottom = _quantile_masks(df, level, quantile)
    lab = df["label"]
    long_hit = (lab > 0)[top].groupby(level=level, sort=True).sum()
    long_n = lab[top].groupby(level=level, sort=True).count()
    short_hit = (lab < 0)[bottom].groupby(level=level, sort=True).sum()
    short_n = lab[bottom].groupby(level=level, sort=True).count()
    with np.errstate(divide="ignore", invalid="ignore"):
        return long_hit / long_n, short_hit / short_n


def calc_long_short_return(
    pred: pd.Series,
    label: pd.Series,
    date_col: str = "datetime",
    quantile: float = 0.2,
    dropna: bool = False,
) -> tuple[pd.Series, pd.Series]:
    """Daily long-short return and "long-average" return (Qlib's ``calc_long_short_return``).

    Long-short is ``(mean label of the top quantile - mean label of the bottom quantile) / 2``.
    Quirk kept from Qlib (its quirk 13): the second series, which feeds the
    "Long-Avg Ann Return/Sharpe" metrics, is the **plain per-date mean label** of the whole
    universe, not "long minus average".
    """
    df = pd.DataFrame({"pred": pred, "label": label})
    level = _date_level(df.index, date_col)
    if dropna:
        df = df.dropna()
    dates = df.index.get_level_values(level).unique().sort_values()
    top, bottom = _quantile_masks(df, level, quantile)
    r_long = df["label"][top].groupby(level=level).mean().reindex(dates)
    r_short = df["label"][bottom].groupby(level=level).mean().reindex(dates)
    r_avg = df["label"].groupby(level=level).mean().reindex(dates)
    return (r_long - r_short) / 2, r_avg


def safe_div(num: float, den: float) -> float:
    """``num / den`` as Python float; NaN (not ±inf plus a numpy warning) when ``den`` is 0."""
    if not np.isfinite(den) or den == 0 or not np.isfinite(num):
        return float("nan")
    return float(num) / float(den)


def risk_analysis(
    r: pd.Series, N: int = 238, mode: Literal["sum", "product"] = "sum"
) -> pd.DataFrame:
    """Qlib's risk table of a return series: one column ``risk`` with the rows
    ``mean, std, annualized_return, information_ratio, max_drawdown``.

    ``N`` is the number of periods per year (Qlib: 238 trading days; 252 for US markets).

    * ``"sum"`` (Qlib's default) treats returns additively: mean, std (ddof=1),
      annualized_return = mean * N, information_ratio = mean / std * sqrt(N),
      max_drawdown = min(cumsum - cummax(cumsum)).
    * ``"product"`` compounds: mean is the geometric mean per period, std that of
      ``log(1 + r)``, annualized_return = (prod(1 + r)) ** (N / len) - 1, and max_drawdown
      the worst ``curve / cummax(curve) - 1`` of the compounded curve (which, as Qlib's,
      starts after the first period, not at 1).

    NaN periods are skipped; a zero or undefined std gives a NaN information ratio.
    """
    r = pd.Series(r, dtype=float).dropna()
    if mode == "sum":
        mean = float(r.mean()) if len(r) else float("nan")
        std = float(r.std(ddof=1)) if len(r) > 1 else float("nan")
        annualized_return = mean * N
        cum = r.cumsum()
        max_drawdown = float((cum - cum.cummax()).min()) if len(r) else float("nan")
    elif mode == "product":
        if len(r) == 0:
            mean = std = annualized_return = max_drawdown = float("nan")
        else:
            curve = (1 + r).cumprod()
            total = float(curve.iloc[-1])
            mean = total ** (1 / len(r)) - 1
            std = float(np.log1p(r).std(ddof=1)) if len(r) > 1 else float("nan")
            annualized_return = total ** (N / len(r)) - 1
            max_drawdown = float((curve / curve.cummax() - 1).min())
    else:
        raise InvalidInputError(f"risk_analysis accepts mode 'sum' or 'product', not {mode!r}")
    information_ratio = safe_div(mean, std) * np.sqrt(N)
    data = {
        "mean": mean,
        "std": std,
        "annualized_return": annualized_return,
        "information_ratio": information_ratio,
        "max_drawdown": max_drawdown,
    }
    return pd.Series(data, dtype=float).to_frame("risk")
