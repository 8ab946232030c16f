"""A seeded synthetic market for the real-Qlib tests: no download needed."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAYS = pd.bdate_range("2020-01-01", periods=300)  # 2020-01-01 .. 2021-02-23
CODES = [f"S{i:03d}" for i in range(40)]
BENCH = "BENCH"  # equal-weight index of CODES, in instruments/all.txt but not in 'market'
MARKET = "market"


def synthetic_market(seed: int = 7) -> pd.DataFrame:
    """Daily OHLCV+vwap of CODES (a common factor plus noise, a little momentum so that a
    model finds some signal) and BENCH, their equal-weight average, in long format."""
    rng = np.random.default_rng(seed)
    n, k = len(DAYS), len(CODES)
    common = rng.normal(0.0002, 0.008, n)
    returns = common[:, None] + rng.normal(0, 0.015, (n, k))
    returns[1:] += 0.1 * returns[:-1]
    close = 20 * np.exp(rng.normal(0, 0.3, k)) * np.exp(np.cumsum(returns, axis=0))
    open_ = close * np.exp(rng.normal(0, 0.004, (n, k)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, (n, k))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, (n, k))))
    volume = rng.integers(100_000, 1_000_000, (n, k)).astype(float)
    fields = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    fields["vwap"] = (high + low + close) / 3
    frames = [
        pd.DataFrame(
            {"datetime": DAYS, "instrument": code, **{f: v[:, j] for f, v in fields.items()}}
        )
        for j, code in enumerate(CODES)
    ]
    bench = pd.DataFrame({"datetime": DAYS, "instrument": BENCH})
    for f, v in fields.items():
        bench[f] = v.mean(axis=1)
    return pd.concat([*frames, bench], ignore_index=True)
