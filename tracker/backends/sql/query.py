"""Compile :mod:`tracker.search` expressions into SQLAlchemy Core over the native tables.

Every value is a bound parameter. The result agrees exactly with :func:`tracker.search.to_predicate`
on SQLite and PostgreSQL:

- a metric, param or tag comparison is a correlated ``EXISTS`` on its child table (``IS NULL`` is
  ``NOT EXISTS``), so a run without the key never matches, even with ``!=``;
- NaN metrics are stored as NULL, which no comparison matches;
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
)

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


def _like_sql(pattern: str) -> str:
    """The pattern for ``LIKE ... ESCAPE '\\'``."""
    return "".join(c if wild or c not in "%_\\" else "\\" + c for wild, c in like_parts(pattern))


def _glob(pattern: str) -> str:
    """The equivalent SQLite ``GLOB`` pattern (case-sensitive)."""
    return "".join(
        ("*" if c == "%" else "?") if wild else (f"[{c}]" if c in "*?[" else c)
        for wild, c in like_parts(pattern)
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


def _string(column: Any, op: str, value: Any, dialect_name: str) -> Any:
    if op in LIST_OPS:
        return column.in_(list(value)) if op == "IN" else column.not_in(list(value))
    if op not in LIKE_OPS:
        return _COMPARE[op](column, value)
    if "ILIKE" in op:
        match = _fold(column, dialect_name).like(ascii_fold(_like_sql(value)), escape="\\")
    elif dialect_name == "sqlite":
        match = column.op("GLOB", is_comparison=True)(_glob(value))
    else:
        match = column.like(_like_sql(value), escape="\\")
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
    return _string(column, c.op, c.value, dialect_name)


def filter_clause(expr: Expr | None, dialect_name: str = "sqlite") -> ColumnElement[bool]:
    """A WHERE clause over ``runs`` for ``expr`` (true for None)."""
    if expr is None:
        return true()
    if isinstance(expr, And):
        return and_(*(filter_clause(e, dialect_name) for e in expr.items))
    if isinstance(expr, Or):
        return or_(*(filter_clause(e, dialect_name) for e in expr.items))
    if expr.kind == "attribute":
        return _attribute(expr, dialect_name)
    table = _CHILD[expr.kind]
    where = [table.c.run_pk == runs.c.pk, table.c.key == expr.key]
    if expr.op not in ("IS NULL", "IS NOT NULL"):
        sample = expr.value[0] if isinstance(expr.value, tuple) else expr.value
        if expr.kind == "metric":
            where.append(_numeric(table.c.value, expr.op, expr.value))
        elif expr.kind == "param" and not isinstance(sample, str):
            where.append(_numeric(table.c.value_num, expr.op, expr.value))
        else:
            where.append(_string(table.c.value, expr.op, expr.value, dialect_name))
    found = select(table.c.run_pk).where(*where).correlate(runs).exists()
    return ~found if expr.op == "IS NULL" else found


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
