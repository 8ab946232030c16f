"""The Python interpreter of filter and order expressions: the path of stores that cannot evaluate a
filter themselves, and the reference the SQL compiler is tested against."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tracker.search.grammar import (
    LIST_OPS,
    NULL_OPS,
    NUMERIC_ATTRIBUTES,
    STALE,
    And,
    Comparison,
    Expr,
    OrderKey,
    ascii_fold,
    ascii_upper,
    like_parts,
    param_number,
)
from tracker.stale import is_stale, stale_cutoff

if TYPE_CHECKING:
    from tracker.entities import Run


@dataclass
class RunView:
    """What the Python interpreter needs of a run. ``attributes`` holds run_id, run_name, status,
    experiment_id (str), start_time, end_time, heartbeat (epoch ms or None) and lifecycle."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_run(cls, run: Run) -> RunView:
        """Build from a :class:`tracker.entities.Run`."""
        i = run.info
        attributes = {"run_id": i.run_id, "run_name": i.name, "status": str(i.status),
                      "experiment_id": i.experiment_id, "start_time": i.start_time,
                      "end_time": i.end_time, "heartbeat": i.heartbeat,
                      "lifecycle": str(i.lifecycle)}  # fmt: skip
        return cls(run.data.metrics, run.data.params, run.data.tags, attributes)


_MISSING: Any = object()
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


def _lookup(run: RunView, kind: str, key: str) -> Any:
    if kind == "attribute":
        value = run.attributes.get(key)
        return _MISSING if value is None else value
    source = run.metrics if kind == "metric" else run.params if kind == "param" else run.tags
    return source.get(key, _MISSING)


def _like_regex(pattern: str, escape: str, fold: Callable[[str], str]) -> re.Pattern[str]:
    body = "".join(
        (".*" if c == "%" else ".") if wild else re.escape(fold(c))
        for wild, c in like_parts(pattern, escape)
    )
    return re.compile(body, re.DOTALL)


def _value_test(op: str, value: Any, escape: str = "") -> Callable[[Any], bool]:
    if op in _COMPARE:
        compare = _COMPARE[op]
        return lambda v: compare(v, value)
    if op in LIST_OPS:
        members, wanted = frozenset(value), op == "IN"
        return lambda v: (v in members) == wanted
    fold = ascii_fold if "ILIKE" in op else str
    regex, wanted = _like_regex(value, escape, fold), not op.startswith("NOT")
    return lambda v: (regex.fullmatch(fold(v)) is not None) == wanted


_POSITIVE = {"!=": "=", "NOT IN": "IN", "LIKE": "ILIKE", "NOT LIKE": "ILIKE", "NOT ILIKE": "ILIKE"}


def status_comparison(c: Comparison) -> tuple[Comparison, bool, bool]:
    """A comparison on ``status`` (not IS NULL) as ``(positive, negated, stale)``: the run
    matches when ``positive`` holds for its stored (upper-case) status, or when it is stale
    and ``stale`` is true, the whole negated when ``negated``. Case is ignored."""
    op, value = _POSITIVE.get(c.op, c.op), c.value
    if op in ("=", "IN"):
        upper = [ascii_upper(str(v)) for v in (value if isinstance(value, tuple) else (value,))]
        value = tuple(upper) if isinstance(value, tuple) else upper[0]
    negated = c.op == "!=" or c.op.startswith("NOT")
    return replace(c, op=op, value=value), negated, _value_test(op, value, c.escape)(STALE)


def _status_predicate(c: Comparison) -> Callable[[RunView], bool]:
    positive, negated, stale = status_comparison(c)
    test = _value_test(positive.op, positive.value, positive.escape)
    cutoff = stale_cutoff()

    def predicate(run: RunView) -> bool:
        a = run.attributes
        status = str(a["status"])
        hit = test(status) or (
            stale and is_stale(status, a.get("heartbeat"), a.get("start_time"), cutoff)  # type: ignore[arg-type]
        )
        return hit != negated

    return predicate


def _comparison_predicate(c: Comparison) -> Callable[[RunView], bool]:
    kind, key = c.kind, c.key
    if c.op in NULL_OPS:
        want_missing = c.op == "IS NULL"
        return lambda run: (_lookup(run, kind, key) is _MISSING) == want_missing
    if kind == "attribute" and key == "status":
        return _status_predicate(c)
    test = _value_test(c.op, c.value, c.escape)
    sample = c.value[0] if isinstance(c.value, tuple) else c.value
    numeric_param = kind == "param" and not isinstance(sample, str)
    as_text = kind == "attribute" and key not in NUMERIC_ATTRIBUTES
    nan_matches = c.op in ("!=", "NOT IN")  # NaN differs from every number (IEEE 754, MLflow)

    def predicate(run: RunView) -> bool:
        value = _lookup(run, kind, key)
        if value is _MISSING:
            return False
        if kind == "metric":
            value = math.nan if value is None else float(value)
            if math.isnan(value):
                return nan_matches
        elif numeric_param:
            value = param_number(value)
            if value is None:
                return False
        elif as_text and not isinstance(value, str):
            value = str(value)
        return test(value)

    return predicate


def to_predicate(expr: Expr | None) -> Callable[[RunView], bool]:
    """Compile an expression into a function of a :class:`RunView`."""
    if expr is None:
        return lambda run: True
    if isinstance(expr, Comparison):
        return _comparison_predicate(expr)
    parts = [to_predicate(e) for e in expr.items]
    if isinstance(expr, And):
        return lambda run: all(p(run) for p in parts)
    return lambda run: any(p(run) for p in parts)


def _order_value(run: RunView, key: OrderKey) -> tuple[int, Any]:
    """(rank, value): rank 0 has a value, 1 is NaN, 2 is missing."""
    value = _lookup(run, key.kind, key.key)
    if value is _MISSING:
        return 2, None
    if key.kind == "metric":
        value = math.nan if value is None else float(value)
        return (1, None) if math.isnan(value) else (0, value)
    if key.kind == "attribute" and key.key == "experiment_id":  # numeric ids sort as numbers
        text = str(value)
        return 0, (int(text), "") if text.isascii() and text.isdigit() else (math.inf, text)
    return 0, value if key.kind == "attribute" and key.key in NUMERIC_ATTRIBUTES else str(value)


def _stable_sort(runs: list[RunView], key: OrderKey) -> list[RunView]:
    ranked: tuple[list[tuple[Any, RunView]], ...] = ([], [], [])
    for run in runs:
        rank, value = _order_value(run, key)
        ranked[rank].append((value, run))
    ranked[0].sort(key=lambda pair: pair[0], reverse=not key.ascending)
    return [run for group in ranked for _, run in group]


def sort_runs(runs: Iterable[RunView], keys: Sequence[OrderKey] = ()) -> list[RunView]:
    """Sort like the SQL backends: by ``keys``, then start_time DESC, then run_id ASC."""
    ordered = sorted(runs, key=lambda run: str(run.attributes.get("run_id", "")))
    ties = (OrderKey("attribute", "start_time", False),)
    for key in reversed((*keys, *ties)):
        ordered = _stable_sort(ordered, key)
    return ordered


def search_in_python(
    runs: Sequence[Run], expr: Expr | None, keys: Sequence[OrderKey], limit: int | None = None
) -> list[Run]:
    """Filter and order :class:`tracker.entities.Run` objects as the SQL backends would: the
    path of stores that cannot evaluate a filter themselves."""
    keep = to_predicate(expr)
    by_id = {run.info.run_id: run for run in runs}
    views = [view for view in (RunView.from_run(run) for run in runs) if keep(view)]
    return [by_id[str(view.attributes["run_id"])] for view in sort_runs(views, keys)][:limit]
