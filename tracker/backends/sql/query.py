"""Compile :mod:`tracker.search` expressions into SQLAlchemy Core over the native tables.

Every value is a bound parameter. The result agrees exactly with :func:`tracker.search.to_predicate`
on SQLite and PostgreSQL:

- the comparisons of an AND on one metric, param or tag key are one correlated ``EXISTS`` on its
  child table (``IS NULL`` is ``NOT EXISTS``), so a run without the key never matches, even with
  ``!=``; on PostgreSQL each is kept a subplan (``IS TRUE``): as semi-joins, the planner
  searched their join orders (8 of them took 0.15 s to plan, 200 took 30 s);
- NaN metrics are stored as NULL, which only ``!=`` and ``NOT IN`` match (``OR value IS NULL``);
- ``status`` compares without case, and ``'stale'`` is the rule of :func:`tracker.stale.is_stale`
  (see :func:`tracker.search.status_comparison`);
- numeric param comparisons use ``params.value_num`` (see :func:`tracker.search.param_number`);
- LIKE is case-sensitive everywhere: SQLite's LIKE is not, so it becomes ``GLOB`` there; ILIKE
  folds ASCII case on both sides (``lower`` on SQLite, whose ``lower`` is ASCII-only, and a
  ``translate`` on PostgreSQL, whose ``lower`` depends on the locale);
- strings sort by code point (``COLLATE "C"`` on PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Select,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from tracker.backends.sql.models import LatestMetricRow, ParamRow, RunRow, TagRow
from tracker.search import (
    LIKE_OPS,
    LIST_OPS,
    NULL_OPS,
    NUMERIC_ATTRIBUTES,
    And,
    Comparison,
    Expr,
    Or,
    OrderKey,
    ascii_fold,
    like_parts,
    parse_filter,
    parse_order_by,
    status_comparison,
)
from tracker.stale import stale_cutoff

__all__ = ["filter_clause", "order_clauses", "select_runs"]

runs = RunRow.__table__
_CHILD = {"metric": LatestMetricRow.__table__, "param": ParamRow.__table__, "tag": TagRow.__table__}
_ATTR_COLUMN = {
    "run_id": runs.c.id,
    "run_name": runs.c.name,
    "status": runs.c.status,
    "experiment_id": runs.c.experiment_id,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "heartbeat": runs.c.heartbeat,
    "lifecycle": runs.c.lifecycle,
}
_COMPARE = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CANONICAL_ID = re.compile(r"0|[1-9][0-9]{0,17}")  # fits in a BIGINT


def _like_sql(pattern: str, escape: str) -> str:
    """The pattern for ``LIKE ... ESCAPE '\\'``."""
    parts = like_parts(pattern, escape)
    return "".join(c if wild or c not in "%_\\" else "\\" + c for wild, c in parts)


def _glob(pattern: str, escape: str) -> str:
    """The equivalent SQLite ``GLOB`` pattern (case-sensitive)."""
    return "".join(
        ("*" if c == "%" else "?") if wild else (f"[{c}]" if c in "*?[" else c)
        for wild, c in like_parts(pattern, escape)
    )


def _fold(column: ColumnElement[Any], dialect_name: str) -> ColumnElement[Any]:
    if dialect_name == "postgresql":
        return func.translate(column, _UPPER, _UPPER.lower())
    return func.lower(column)


def _number(value: Any, integer_column: bool) -> ColumnElement[Any]:
    if integer_column and isinstance(value, int):
        return literal(value, BigInteger)
    return literal(float(value), Float(53))


def _numeric(column: Any, op: str, value: Any, integer_column: bool = False) -> Any:
    if op in LIST_OPS:
        values = [_number(v, integer_column) for v in value]
        return column.in_(values) if op == "IN" else column.not_in(values)
    return _COMPARE[op](column, _number(value, integer_column))


def _string(column: Any, op: str, value: Any, dialect_name: str, escape: str = "") -> Any:
    if op in LIST_OPS:
        return column.in_(list(value)) if op == "IN" else column.not_in(list(value))
    if op not in LIKE_OPS:
        return _COMPARE[op](column, value)
    pattern = _like_sql(value, escape)
    if "ILIKE" in op:
        match = _fold(column, dialect_name).like(ascii_fold(pattern), escape="\\")
    elif dialect_name == "sqlite":
        match = column.op("GLOB", is_comparison=True)(_glob(value, escape))
    else:
        match = column.like(pattern, escape="\\")
    return not_(match) if op.startswith("NOT") else match


def _experiment_id(op: str, value: Any) -> ColumnElement[bool]:
    """The public experiment id is the decimal string of the integer column."""
    column = runs.c.experiment_id
    values = value if isinstance(value, tuple) else (value,)
    ids = [int(v) for v in values if _CANONICAL_ID.fullmatch(v)]
    if op in ("=", "IN"):
        return column.in_(ids) if ids else false()
    return column.not_in(ids) if ids else column.is_not(None)


def _attribute(c: Comparison, dialect_name: str) -> ColumnElement[bool]:
    column = _ATTR_COLUMN[c.key]
    if c.op == "IS NULL":
        return column.is_(None)
    if c.op == "IS NOT NULL":
        return column.is_not(None)
    if c.key in NUMERIC_ATTRIBUTES:
        return _numeric(column, c.op, c.value, integer_column=True)
    if c.key == "experiment_id":
        if c.op not in LIKE_OPS:
            return _experiment_id(c.op, c.value)
        column = cast(column, Text)
    if c.key == "status":
        return _status(c, dialect_name)
    return _string(column, c.op, c.value, dialect_name, c.escape)


def _status(c: Comparison, dialect_name: str) -> ColumnElement[bool]:
    positive, negated, stale = status_comparison(c)
    match = _string(runs.c.status, positive.op, positive.value, dialect_name, positive.escape)
    if stale:
        last = func.coalesce(runs.c.heartbeat, runs.c.start_time, 0)
        cutoff = literal(stale_cutoff(), BigInteger)
        match = or_(match, and_(runs.c.status == "RUNNING", last < cutoff))
    return not_(match) if negated else match  # never NULL: status and the coalesce are not


def filter_clause(expr: Expr | None, dialect_name: str = "sqlite") -> ColumnElement[bool]:
    """A WHERE clause over ``runs`` for ``expr`` (true for None)."""
    if expr is None:
        return true()
    if isinstance(expr, Or):
        return or_(*(filter_clause(e, dialect_name) for e in expr.items))
    clauses = []
    by_key: dict[tuple[str, str], list[Comparison]] = {}
    for item in expr.items if isinstance(expr, And) else (expr,):
        if not isinstance(item, Comparison):
            clauses.append(filter_clause(item, dialect_name))
        elif item.kind == "attribute":
            clauses.append(_attribute(item, dialect_name))
        elif item.op in NULL_OPS:
            clauses.append(_has_key(item.kind, item.key, [], dialect_name, item.op == "IS NULL"))
        else:
            by_key.setdefault((item.kind, item.key), []).append(item)
    for (kind, key), group in by_key.items():
        clauses.append(_has_key(kind, key, group, dialect_name))
    return and_(*clauses)


def _has_key(
    kind: str, key: str, tests: list[Comparison], dialect_name: str, missing: bool = False
) -> ColumnElement[bool]:
    """Whether the run has ``key`` with a value passing every test (or, ``missing``, not)."""
    table = _CHILD[kind]
    where = [table.c.run_pk == runs.c.pk, table.c.key == key]
    where += [_value_test(table, c, dialect_name) for c in tests]
    found: ColumnElement[bool] = select(table.c.run_pk).where(*where).correlate(runs).exists()
    if missing:
        found = ~found
    return found.is_(true()) if dialect_name == "postgresql" else found


def _value_test(table: Any, c: Comparison, dialect_name: str) -> ColumnElement[bool]:
    sample = c.value[0] if isinstance(c.value, tuple) else c.value
    if c.kind == "metric":
        test = _numeric(table.c.value, c.op, c.value)
        return or_(test, table.c.value.is_(None)) if c.op in ("!=", "NOT IN") else test
    if c.kind == "param" and not isinstance(sample, str):
        return _numeric(table.c.value_num, c.op, c.value)
    return _string(table.c.value, c.op, c.value, dialect_name, c.escape)


def _text_order(column: Any, dialect_name: str) -> Any:
    return column.collate("C") if dialect_name == "postgresql" else column


def order_clauses(
    keys: Sequence[OrderKey], dialect_name: str = "sqlite"
) -> tuple[list[tuple[FromClause, ColumnElement[bool]]], list[ColumnElement[Any]]]:
    """``(outer_joins, order_by)``: join each ``(table, onclause)`` to ``runs`` with a LEFT OUTER
    JOIN, then order by the expressions. Runs with a value come first, then NaN metrics, then
    runs without the key, in either direction; ties go to start_time DESC, then run id."""
    joins: list[tuple[FromClause, ColumnElement[bool]]] = []
    order: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys):
        if key.kind == "attribute":
            column: Any = _ATTR_COLUMN[key.key]
            if key.key in NUMERIC_ATTRIBUTES:
                order.append(case((column.is_(None), 1), else_=0))
            elif key.key != "experiment_id":
                column = _text_order(column, dialect_name)
        else:
            table = _CHILD[key.kind].alias(f"order_{i}")
            joins.append((table, and_(table.c.run_pk == runs.c.pk, table.c.key == key.key)))
            if key.kind == "metric":
                nan_rank = case((table.c.value.is_(None), 1), else_=0)
                order.append(case((table.c.run_pk.is_(None), 2), else_=nan_rank))
                column = table.c.value
            else:
                order.append(case((table.c.run_pk.is_(None), 1), else_=0))
                column = _text_order(table.c.value, dialect_name)
        order.append(column.asc() if key.ascending else column.desc())
    order.extend(_tie_breakers(dialect_name))
    return joins, order


def _tie_breakers(dialect_name: str) -> list[ColumnElement[Any]]:
    """start_time DESC (missing last), then run id. Written so that SQLite walks the
    (experiment, lifecycle, start_time) index instead of sorting, where its DESC already
    puts NULLs last."""
    newest = runs.c.start_time.desc()
    if dialect_name != "sqlite":
        newest = newest.nulls_last()
    return [newest, _text_order(runs.c.id, dialect_name).asc()]


def select_runs(
    expr: Expr | str | None = None,
    order: Sequence[OrderKey] | Sequence[str] | str | None = None,
    experiment_pks: Sequence[int] | None = None,
    lifecycles: Sequence[str] | None = None,
    limit: int | None = None,
    dialect_name: str = "sqlite",
    *,
    offset: int | None = None,
) -> Select[Any]:
    """A ``SELECT`` of the ``runs`` columns matching ``expr`` in ``order``. ``experiment_pks`` and
    ``lifecycles`` restrict the runs when given; strings are parsed first."""
    if isinstance(expr, str):
        expr = parse_filter(expr)
    if order is None or isinstance(order, str) or any(isinstance(k, str) for k in order):
        order = parse_order_by(order)  # type: ignore[arg-type]
    joins, order_by = order_clauses(order, dialect_name)  # type: ignore[arg-type]
    source: FromClause = runs
    for table, onclause in joins:
        source = source.outerjoin(table, onclause)
    stmt = select(runs).select_from(source)
    if experiment_pks is not None:
        stmt = stmt.where(runs.c.experiment_id.in_(list(experiment_pks)))
    if lifecycles is not None:
        stmt = stmt.where(runs.c.lifecycle.in_(list(lifecycles)))
    if expr is not None:
        stmt = stmt.where(filter_clause(expr, dialect_name))
    stmt = stmt.order_by(*order_by)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return stmt


def select_runs_key_first(
    expr: Expr | None,
    order: Sequence[OrderKey],
    experiment_pks: Sequence[int] | None,
    lifecycles: Sequence[str] | None,
    limit: int | None,
    dialect_name: str = "sqlite",
) -> tuple[Select[Any], Select[Any]]:
    """Two queries that, run in turn, give what :func:`select_runs` gives when ``order[0]``
    is a metric, param or tag: first the runs that have that key, read in key order from its
    ``(key, value)`` index so that the first page needs no sort of the whole experiment; then
    the runs without the key.

    SQLite's planner, lacking statistics, otherwise scans every run of the experiment and
    sorts; the run restrictions are made non-indexable here (``+ 0``, ``|| ''``) so that it
    drives the join from the key's index instead.
    """
    first, rest = order[0], list(order[1:])
    lead = _CHILD[first.kind].alias("lead")
    joins, rest_order = order_clauses(rest, dialect_name)
    value: Any = lead.c.value if first.kind == "metric" else _text_order(lead.c.value, dialect_name)
    lead_order = value.asc() if first.ascending else value.desc()
    if first.kind == "metric" and (first.ascending or dialect_name != "sqlite"):
        lead_order = lead_order.nulls_last()  # NaN after every value, either direction
    source: FromClause = lead.join(runs, runs.c.pk == lead.c.run_pk)
    for table, onclause in joins:
        source = source.outerjoin(table, onclause)
    having = select(runs).select_from(source).where(lead.c.key == first.key)
    unindexed = dialect_name == "sqlite"
    exp_col: Any = runs.c.experiment_id + 0 if unindexed else runs.c.experiment_id
    life_col: Any = runs.c.lifecycle.concat("") if unindexed else runs.c.lifecycle
    if experiment_pks is not None:
        having = having.where(exp_col.in_(list(experiment_pks)))
    if lifecycles is not None:
        having = having.where(life_col.in_(list(lifecycles)))
    if expr is not None:
        having = having.where(filter_clause(expr, dialect_name))
    having = having.order_by(lead_order, *rest_order)
    missing = Comparison(first.kind, first.key, "IS NULL", None)
    without_expr: Expr = missing if expr is None else And((expr, missing))
    without = select_runs(without_expr, rest, experiment_pks, lifecycles, limit, dialect_name)
    if limit is not None:
        having = having.limit(limit)
    return having, without
