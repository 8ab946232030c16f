"""Unicode sparklines: a metric's whole history at a glance, in a table cell."""

from __future__ import annotations

import math
from collections.abc import Sequence

TICKS = "▁▂▃▄▅▆▇█"
NAN_MARK = "·"  # a bucket with only NaN: visible, so gaps in a history are not hidden
POS_INF_MARK = "↑"
NEG_INF_MARK = "↓"


def _bucket(values: Sequence[float]) -> float | str:
    """A bucket's height: the mean of its finite values, or a mark when it has none.

    The mean rather than the last point, so a single spike in a long history still moves
    the line a little instead of vanishing or dominating."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        return math.fsum(finite) / len(finite)
    if any(v == math.inf for v in values):
        return POS_INF_MARK
    if any(v == -math.inf for v in values):
        return NEG_INF_MARK
    return NAN_MARK


def downsample(values: Sequence[float], width: int) -> list[float | str]:
    """At most ``width`` buckets of consecutive points, sized as evenly as possible."""
    n = len(values)
    if n <= width:
        return [_bucket([v]) for v in values]
    bounds = [round(i * n / width) for i in range(width + 1)]
    return [_bucket(values[bounds[i] : bounds[i + 1]]) for i in range(width)]


def sparkline(values: Sequence[float], width: int = 16) -> str:
    """``values`` as at most ``width`` block characters, lowest ``▁`` to highest ``█``.

    NaN shows as ``·``, infinities as ``↑``/``↓``; they do not stretch the scale. A flat
    history is drawn mid-height. Fewer than two points give ``""`` (nothing to see)."""
    if len(values) < 2 or width < 1:
        return ""
    buckets = downsample([float(v) for v in values], width)
    heights = [b for b in buckets if isinstance(b, float)]
    low, high = (min(heights), max(heights)) if heights else (0.0, 0.0)
    span = high - low
    out = []
    for b in buckets:
        if isinstance(b, str):
            out.append(b)
        elif span <= 0 or not math.isfinite(span):
            out.append(TICKS[len(TICKS) // 2 - 1])
        else:
            out.append(TICKS[min(len(TICKS) - 1, int((b - low) / span * len(TICKS)))])
    return "".join(out)
