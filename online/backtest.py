"""A daily top-k / dropout long-only backtest (Qlib's ``TopkDropoutStrategy`` on a
``SimulatorExecutor`` with day steps), small enough to check by hand.

Timing - no look-ahead by construction
--------------------------------------
The book formed on day ``t`` from the scores of day ``t`` earns ``returns[t]``. The caller
aligns ``returns`` so that ``returns[t]`` is realised strictly after day ``t``'s scores
are known. The two usual alignments (see :func:`forward_returns`):

* ``delay=1`` (the default, what :class:`PortAnaRecord` uses): scores are
  computed after the close of ``t``, the trades fill at the close of ``t+1`` and the book
  earns ``close[t+2] / close[t+1] - 1``. That is exactly Qlib's default label
  ``LABEL0[t]``, so the backtest needs nothing beyond ``label.pkl``. Qlib's own
  backtest has the same economics (it trades day ``t+1``'s close on day ``t``'s signal).
* ``delay=0``: the trades fill at the close of ``t`` itself, earning
  ``close[t+1] / close[t] - 1`` (optimistic: it assumes the signal is ready at the close).

The report is indexed by the signal date ``t``; with ``delay=1`` the row's return is
realised two trading days later. Trailing dates without any realised return (the end of the
data) are dropped, as Qlib moves the backtest end back.

The book (Qlib's rules)
-----------------------
Each day, with ``last`` the held names sorted by the day's score (a held name without a
score sorts last, as pandas' NaN-last sort in Qlib, and so is dropped first):
``today`` = the best ``n_drop + topk - len(last)`` scored names not held; of
``last + today`` sorted by score, held names among the worst ``n_drop`` are sold; then the
best ``len(sold) + topk - len(last)`` of ``today`` are bought. Ties go to the instrument
that sorts first by name. Sales go to cash; the cash times ``risk_degree`` (Qlib: 0.95) is
split equally over the buys, each buy's budget paying its cost too. Held positions are not
rebalanced (they drift with their returns, as in Qlib). Costs are
``max(value * rate, min_cost)`` per trade: ``close_cost`` on sales, ``open_cost`` on buys.

A held name whose return is NaN on a day (a missing day, a delisting) earns 0 and stays held.

Report columns (Qlib's ``report_normal``), per signal date: ``account`` (value after the
day's return), ``return`` (gross of costs, over the previous account), ``total_turnover``,
``turnover`` (bought + sold value over the previous account), ``total_cost``, ``cost``
(over the previous account), ``value`` (stock value), ``cash``, ``bench``. So
``return - cost`` is the net change of the account.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError
from tracker.online import progress

__all__ = [
    "REPORT_COLUMNS",
    "backtest_topk_dropout",
    "forward_returns",
    "from_qlib_config",
]

logger = logging.getLogger(__name__)

REPORT_COLUMNS = [
    "account",
    "return",
    "total_turnover",
    "turnover",
    "total_cost",
    "cost",
    "value",
    "cash",
    "bench",
]


def forward_returns(close: pd.Series, delay: int = 1) -> pd.Series:
    """``close[t+1+delay] / close[t+delay] - 1`` per instrument, indexed by ``t``.

    ``close`` is indexed ``(datetime, instrument)``. Shifts are by each instrument's rows,
    so a missing day is bridged by the next available price. ``delay=1`` equals Qlib's
    default label; see the module docstring for which one a backtest should use.
    """
    if delay < 0:
        raise InvalidInputError(f"delay must be >= 0, got {delay}")
    close = close.sort_index()
    by_inst = close.groupby(level="instrument")
    start, end = by_inst.shift(-delay), by_inst.shift(-1 - delay)
    out = end / start - 1
    return out.replace([np.inf, -np.inf], np.nan).rename("return")


def _wide(s: pd.Series | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(s, pd.DataFrame):
        s = s.iloc[:, 0]
    if not isinstance(s.index, pd.MultiIndex) or s.index.nlevels != 2:
        raise InvalidInputError(f"{what} must be indexed by (datetime, instrument)")
    if s.index.has_duplicates:
        raise InvalidInputError(f"{what} has duplicate (datetime, instrument) keys")
    return s.astype(float).unstack(level=1)


def _order(keys: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` sorted by score descending, NaN last, ties by instrument position."""
    k = keys[idx]
    k = np.where(np.isnan(k), np.inf, -k)
    return idx[np.lexsort((idx, k))]


def _trade_cost(value: float, rate: float, min_cost: float) -> float:
    return max(value * rate, min_cost)


def backtest_topk_dropout(
    pred: pd.Series | pd.DataFrame,
    returns: pd.Series,
    *,
    topk: int = 50,
    n_drop: int = 5,
    open_cost: float = 0.0005,
    close_cost: float = 0.0015,
    min_cost: float = 5.0,
    risk_degree: float = 0.95,
    account: float = 1e8,
    benchmark: pd.Series | None = None,
    show_progress: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the top-k / dropout book over the dates of ``pred`` (see the module docstring).

    Args:
        pred: scores indexed ``(datetime, instrument)`` (a frame's first column is used).
        returns: the return each name earns when held from day ``t`` (same index), e.g.
            ``forward_returns(close)`` or the raw label ``LABEL0``.
        benchmark: the benchmark's return for each signal date, aligned like ``returns``;
            default: the equal-weighted mean of ``returns`` over its instruments that day.
        show_progress: False reports nothing; otherwise each day is reported to the installed
            :mod:`~tracker.online.progress` renderer (``tracker`` draws a bar on a terminal).

    Returns:
        ``(report, positions)``: the daily report (columns :data:`REPORT_COLUMNS`, index
        ``datetime``) and the book after each day's trades, indexed
        ``(datetime, instrument)`` with ``value`` and ``weight`` (share of the account).
    """
    if topk <= 0 or n_drop < 0:
        raise InvalidInputError(f"need topk > 0 and n_drop >= 0, got topk={topk}, n_drop={n_drop}")
    if not 0 < risk_degree <= 1:
        raise InvalidInputError(f"risk_degree must be in (0, 1], got {risk_degree}")
    scores = _wide(pred, "pred")
    rets = _wide(returns, "returns")
    names = scores.columns.union(rets.columns).sort_values()
    dates = scores.index.sort_values()
    rets = rets.reindex(index=dates, columns=names)
    scores = scores.reindex(index=dates, columns=names)
    realised = np.flatnonzero(rets.notna().any(axis=1).to_numpy())
    if len(realised) == 0:
        raise InvalidInputError("no date of pred has a realised return; check the returns' dates")
    if realised[-1] + 1 < len(dates):
        logger.info("backtest ends %s: later dates have no realised return", dates[realised[-1]])
    dates = dates[: realised[-1] + 1]
    if benchmark is None:
        bench = rets.reindex(dates).mean(axis=1)
    else:
        bench = benchmark.astype(float).reindex(dates)
        if bench.isna().any():
            missing = list(bench.index[bench.isna()][:3])
            raise InvalidInputError(
                f"benchmark has no return for {len(missing)}+ dates, e.g. {missing}"
            )
    score_arr, ret_arr = scores.to_numpy(), rets.to_numpy()

    held: dict[int, float] = {}  # instrument position -> market value, in buy order
    cash, prev_account = float(account), float(account)
    total_turnover = total_cost = 0.0
    rows: list[list[float]] = []
    pos_keys: list[tuple[Any, Any]] = []
    pos_vals: list[tuple[float, float]] = []
    show = None if show_progress is False else progress.current()
    for d in range(len(dates)):
        if show is not None:
            show("backtest", d, len(dates))
        s = score_arr[d]
        last = _order(s, np.fromiter(held, dtype=int, count=len(held)))
        held_mask = np.zeros(len(names), dtype=bool)
        held_mask[last] = True
        candidates = _order(s, np.flatnonzero(~held_mask & ~np.isnan(s)))
        today = candidates[: max(n_drop + topk - len(last), 0)]
        comb = _order(s, np.concatenate([last, today]))
        worst = set(comb[max(len(comb) - n_drop, 0) :].tolist()) if n_drop else set()
        sell = [int(i) for i in last if i in worst]
        buy = today[: max(len(sell) + topk - len(last), 0)]

        cost = turnover = 0.0
        for i in sell:
            value = held.pop(i)
            fee = _trade_cost(value, close_cost, min_cost)
            cash += value - fee
            cost, turnover = cost + fee, turnover + value
        if len(buy) and cash > 0:
            budget = cash * risk_degree / len(buy)
            # The budget covers the trade and its fee: value + max(value*rate, min) = budget.
            value = min(budget / (1 + open_cost), budget - min_cost)
            if value > 0:
                for i in buy:
                    held[int(i)] = value
                    cash -= budget
                    cost, turnover = cost + budget - value, turnover + value
        book = cash + sum(held.values())
        for i, value in held.items():
            pos_keys.append((dates[d], names[i]))
            pos_vals.append((value, value / book if book else np.nan))
        for i in held:
            r = ret_arr[d, i]
            held[i] *= 1.0 + (0.0 if np.isnan(r) else r)
        stock = sum(held.values())
        now = cash + stock
        total_turnover += turnover
        total_cost += cost
        rows.append(
            [
                now,
                (now - prev_account + cost) / prev_account,
                total_turnover,
                turnover / prev_account,
                total_cost,
                cost / prev_account,
                stock,
                cash,
                float(bench.iloc[d]),
            ]
        )
        prev_account = now
    if show is not None:
        show("backtest", len(dates), len(dates))
    report = pd.DataFrame(rows, index=pd.Index(dates, name="datetime"), columns=REPORT_COLUMNS)
    pos_index = pd.MultiIndex.from_arrays(
        [[k[0] for k in pos_keys], [k[1] for k in pos_keys]], names=["datetime", "instrument"]
    )
    positions = pd.DataFrame(pos_vals, index=pos_index, columns=["value", "weight"])
    return report, positions


_STRATEGY_KEYS = {"topk", "n_drop", "risk_degree"}
_EXCHANGE_KEYS = {"open_cost", "close_cost", "min_cost"}
_BACKTEST_KEYS = {"account", "benchmark", "start_time", "end_time"}


def from_qlib_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`backtest_topk_dropout` keyword arguments (plus ``start_time``/``end_time``)
    found in Qlib's PortAnaRecord config, i.e. its ``{"strategy": {"kwargs": …}, "backtest": {…,
    "exchange_kwargs": …}}`` form; anything else there (``executor``, ``deal_price``,
    ``limit_threshold`` …) is ignored and logged: the backtest is daily, at the close."""
    strategy = dict((config.get("strategy") or {}).get("kwargs") or {})
    backtest = dict(config.get("backtest") or {})
    exchange = dict(backtest.pop("exchange_kwargs", None) or {})
    out = {k: v for k, v in strategy.items() if k in _STRATEGY_KEYS}
    out.update({k: v for k, v in exchange.items() if k in _EXCHANGE_KEYS})
    out.update({k: v for k, v in backtest.items() if k in _BACKTEST_KEYS})
    ignored = sorted(
        {f"strategy.kwargs.{k}" for k in strategy if k not in _STRATEGY_KEYS | {"signal"}}
        | {f"backtest.exchange_kwargs.{k}" for k in exchange if k not in _EXCHANGE_KEYS}
        | {f"backtest.{k}" for k in backtest if k not in _BACKTEST_KEYS}
        | {k for k in config if k not in ("strategy", "backtest")}
    )
    if ignored:
        logger.info("the top-k backtest ignores the Qlib config keys %s", ignored)
    return out
