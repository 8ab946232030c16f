"""The filter / order-by language: parser, formatter, Python interpreter, and the SQL compiler,
which must agree with the Python interpreter on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from tracker.backends.sql import models
from tracker.backends.sql.query import filter_clause, select_runs, select_runs_key_first
from tracker.errors import InvalidInputError, InvalidQueryError
from tracker.search import (
    MAX_CLAUSES,
    MAX_DEPTH,
    And,
    Comparison,
    Expr,
    Or,
    OrderKey,
    RunView,
    format_filter,
    param_number,
    parse_filter,
    parse_order_by,
    sort_runs,
    to_predicate,
)

M, P, T, A = "metric", "param", "tag", "attribute"


def C(kind: str, key: str, op: str, value: object = None, escape: str = "") -> Comparison:
    return Comparison(kind, key, op, value, escape)


IC_GT = C(M, "IC", ">", 0.05)
FAILED = C(A, "status", "=", "FAILED")

VALID = [
    pytest.param("metrics.IC > 0.05", IC_GT, id="metric-gt"),
    pytest.param("metric.IC>=-1", C(M, "IC", ">=", -1), id="metric-alias-no-spaces"),
    pytest.param("metrics.loss < 1e-3", C(M, "loss", "<", 0.001), id="metric-scientific"),
    pytest.param("metrics.n = +.5", C(M, "n", "=", 0.5), id="metric-plus-dot"),
    pytest.param("metrics.n == 5.", C(M, "n", "=", 5.0), id="double-equals"),
    pytest.param("metrics.n <> 3", C(M, "n", "!=", 3), id="ne-sql"),
    pytest.param("metrics.n <= 2", C(M, "n", "<=", 2), id="metric-le"),
    pytest.param(
        "metrics.1day.excess_return_with_cost.mean > 0",
        C(M, "1day.excess_return_with_cost.mean", ">", 0),
        id="dotted-key-first-dot-ends-type",
    ),
    pytest.param("metrics.`Rank IC` > 0.1", C(M, "Rank IC", ">", 0.1), id="backtick-key"),
    pytest.param("params.\"lr.x\" = '0.1'", C(P, "lr.x", "=", "0.1"), id="double-quoted-key"),
    pytest.param("metrics.`a``b` = 1", C(M, "a``b", "=", 1), id="quoted-key-taken-as-is"),
    pytest.param('metrics."a`b" = 1', C(M, "a`b", "=", 1), id="backtick-in-double-quoted-key"),
    pytest.param("tags.E'a`b\"c' = 'v'", C(T, 'a`b"c', "=", "v"), id="escape-string-key"),
    pytest.param("metrics.a/b-c = 1", C(M, "a/b-c", "=", 1), id="slash-dash-in-key"),
    pytest.param("metrics.x IN (1, 2.5)", C(M, "x", "IN", (1, 2.5)), id="metric-in"),
    pytest.param("metrics.x not in (1)", C(M, "x", "NOT IN", (1,)), id="metric-not-in"),
    pytest.param("metrics.x IS NULL", C(M, "x", "IS NULL"), id="metric-is-null"),
    pytest.param("metrics.x is not null", C(M, "x", "IS NOT NULL"), id="metric-is-not-null"),
    pytest.param("metrics.x = 9007199254740993", C(M, "x", "=", 2.0**53), id="huge-int-float"),
    pytest.param("params.lr = '0.1'", C(P, "lr", "=", "0.1"), id="param-string-eq"),
    pytest.param("params.lr = 0.1", C(P, "lr", "=", 0.1), id="param-numeric-eq"),
    pytest.param("param.lr > 0.01", C(P, "lr", ">", 0.01), id="param-numeric-gt"),
    pytest.param("parameter.lr != 'a'", C(P, "lr", "!=", "a"), id="param-alias-parameter"),
    pytest.param("parameters.n IN (1, 2)", C(P, "n", "IN", (1, 2)), id="param-in-numbers"),
    pytest.param("params.m IN ('a', \"b\")", C(P, "m", "IN", ("a", "b")), id="param-in-strings"),
    pytest.param("params.m LIKE 'lgb%'", C(P, "m", "LIKE", "lgb%"), id="param-like"),
    pytest.param("params.m ilike 'LGB%'", C(P, "m", "ILIKE", "LGB%"), id="param-ilike"),
    pytest.param("params.m NOT LIKE 'a_'", C(P, "m", "NOT LIKE", "a_"), id="param-not-like"),
    pytest.param("params.m not ilike 'a'", C(P, "m", "NOT ILIKE", "a"), id="param-not-ilike"),
    pytest.param("params.m NOT IN ('a')", C(P, "m", "NOT IN", ("a",)), id="param-not-in"),
    pytest.param('tags.x = "a b"', C(T, "x", "=", "a b"), id="tag-double-quoted-value"),
    # As in MLflow (sqlparse), the text between the quotes is the value: nothing is unescaped.
    pytest.param("tag.x = 'it''s'", C(T, "x", "=", "it''s"), id="doubled-quote-kept"),
    pytest.param("tags.x = 'it\\'s'", C(T, "x", "=", "it\\'s"), id="backslash-quote-kept"),
    pytest.param("tags.x = 'a\\\\b'", C(T, "x", "=", "a\\\\b"), id="backslashes-kept"),
    pytest.param("tags.x = 'a\\'", C(T, "x", "=", "a\\"), id="backslash-before-closing-quote"),
    pytest.param('tags.x = "it\'s"', C(T, "x", "=", "it's"), id="double-quoted-apostrophe"),
    pytest.param("tags.x = E'it\\'s \"x\"'", C(T, "x", "=", 'it\'s "x"'), id="escape-string"),
    pytest.param("tags.x = e'a''b\\\\c\\d'", C(T, "x", "=", "a'b\\cd"), id="escape-string-pairs"),
    pytest.param("tags.x LIKE '100\\%'", C(T, "x", "LIKE", "100\\%"), id="like-backslash"),
    pytest.param(
        "tags.x LIKE '100!%' ESCAPE '!'", C(T, "x", "LIKE", "100!%", "!"), id="like-escape"
    ),
    pytest.param(
        "tags.x not ilike 'a\\_' escape '\\'",
        C(T, "x", "NOT ILIKE", "a\\_", "\\"),
        id="ilike-escape-backslash",
    ),
    pytest.param(
        "tags.mlflow.runName LIKE 'x%'", C(A, "run_name", "LIKE", "x%"), id="mlflow-run-name-tag"
    ),
    pytest.param(
        "tags.`mlflow.runName` = 'x'", C(A, "run_name", "=", "x"), id="quoted-run-name-tag"
    ),
    pytest.param("tags.x IS NULL", C(T, "x", "IS NULL"), id="tag-is-null"),
    pytest.param("status = 'FAILED'", FAILED, id="attribute-without-prefix"),
    pytest.param("STATUS = 'FAILED'", FAILED, id="attribute-name-case-insensitive"),
    pytest.param("attributes.status = 'FAILED'", FAILED, id="attributes-prefix"),
    pytest.param("attribute.status = 'FAILED'", FAILED, id="attribute-prefix"),
    pytest.param("attr.run_id IN ('a', 'b')", C(A, "run_id", "IN", ("a", "b")), id="attr-in"),
    pytest.param("run.id = 'abc'", C(A, "run_id", "=", "abc"), id="run-prefix-id-alias"),
    pytest.param("name LIKE 'x%'", C(A, "run_name", "LIKE", "x%"), id="name-alias"),
    pytest.param("\"run name\" = 'x'", C(A, "run_name", "=", "x"), id="quoted-run-name"),
    pytest.param("attributes.`run name` = 'x'", C(A, "run_name", "=", "x"), id="prefixed-run-name"),
    pytest.param("created > 5", C(A, "start_time", ">", 5), id="created-alias"),
    pytest.param("attributes.end_time IS NULL", C(A, "end_time", "IS NULL"), id="end-time-null"),
    pytest.param("heartbeat <= 10", C(A, "heartbeat", "<=", 10), id="heartbeat"),
    pytest.param("lifecycle_stage = 'active'", C(A, "lifecycle", "=", "active"), id="lifecycle"),
    pytest.param("experiment_id = '1'", C(A, "experiment_id", "=", "1"), id="experiment-id"),
    pytest.param(
        "metrics.IC > 0.05 and status = 'FAILED'", And((IC_GT, FAILED)), id="and-lowercase"
    ),
    pytest.param(
        "metrics.IC > 0.05 OR status = 'FAILED' AND tags.x IS NULL",
        Or((IC_GT, And((FAILED, C(T, "x", "IS NULL"))))),
        id="and-binds-tighter-than-or",
    ),
    pytest.param(
        "(metrics.IC > 0.05 OR status = 'FAILED') AND tags.x IS NULL",
        And((Or((IC_GT, FAILED)), C(T, "x", "IS NULL"))),
        id="parentheses",
    ),
    pytest.param("((metrics.IC > 0.05))", IC_GT, id="redundant-parentheses"),
    pytest.param(
        "metrics.IC > 0.05 AND status = 'FAILED' AND metrics.IC > 0.05",
        And((IC_GT, FAILED, IC_GT)),
        id="and-chain-is-flat",
    ),
    pytest.param("\n metrics.IC\t>\n0.05 ", IC_GT, id="any-whitespace"),
    pytest.param("", None, id="empty"),
    pytest.param("   ", None, id="blank"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: Expr | None) -> None:
    assert parse_filter(text) == expected
    assert parse_filter(format_filter(expected)) == expected


INVALID = [
    pytest.param(
        "metrics.IC > '0.05'",
        "metrics compare with numbers: use metrics.IC > 0.05, not '0.05'",
        13,
        id="metric-quoted-number",
    ),
    pytest.param(
        "foo = 'x'",
        "unknown attribute 'foo'; valid attributes: run_id, run_name, status, experiment_id",
        0,
        id="unknown-attribute",
    ),
    pytest.param("attributes.foo = 'x'", "unknown attribute 'foo'", 11, id="unknown-prefixed"),
    pytest.param("metricz.IC > 1", "unknown type 'metricz'", 0, id="unknown-type"),
    pytest.param("datasets.name = 'x'", "valid types: metrics, params", 0, id="datasets"),
    pytest.param(
        "metrics.IC 0.05",
        "expected a comparison operator after 'metrics.IC' (one of =, !=, <, <=, >, >=, LIKE",
        11,
        id="missing-operator",
    ),
    pytest.param("metrics.IC", "found end of input", 10, id="operator-at-end"),
    pytest.param("tags.x = 'abc", "unterminated string", 9, id="unterminated-string"),
    pytest.param(
        "tags.x = 'a\\' AND tags.y = 'b'", "unterminated string", 29, id="backslash-quote-continues"
    ),
    pytest.param("tags.x = E'abc", "unterminated escape string", 9, id="unterminated-e-string"),
    pytest.param(
        "tags.x LIKE 'a' ESCAPE 'ab'", "ESCAPE takes one character", 23, id="escape-two-chars"
    ),
    pytest.param("tags.x LIKE 'a' ESCAPE 1", "ESCAPE takes one character", 23, id="escape-number"),
    pytest.param(
        "tags.x LIKE 'a!' ESCAPE '!'", "ends with its ESCAPE character '!'", 17, id="escape-last"
    ),
    pytest.param("tags.x = 'a' ESCAPE '!'", "found 'ESCAPE'", 13, id="escape-without-like"),
    pytest.param("metrics.`a b > 1", "unterminated quoted key", 8, id="unterminated-key"),
    pytest.param("status = 'x')", "unexpected ')'", 12, id="unexpected-close"),
    pytest.param(")", "expected a filter clause", 0, id="close-first"),
    pytest.param(
        "(status = 'x'", "expected ')' to close the '(' at position 0", 13, id="missing-close"
    ),
    pytest.param("params.lr < 'a'", "params compare with < as numbers", 12, id="param-lt-str"),
    pytest.param(
        "tags.x = 5", "tags compare with strings: use tags.x = '5', not 5", 9, id="tag-number"
    ),
    pytest.param(
        "tags.x < '5'", "< is not valid for tags; valid operators: =, !=, LIKE", 7, id="tag-lt"
    ),
    pytest.param("metrics.IC LIKE '%'", "LIKE is not valid for metrics", 11, id="metric-like"),
    pytest.param("status > 'a'", "> is not valid for attribute 'status'", 7, id="status-gt"),
    pytest.param(
        "start_time > 'x'",
        "start_time compares with numbers (epoch milliseconds)",
        13,
        id="time-string",
    ),
    pytest.param(
        "experiment_id = 3",
        "attribute 'experiment_id' compares with strings: use experiment_id = '3'",
        16,
        id="experiment-id-number",
    ),
    pytest.param("metrics.x IN (1, 'a')", "metrics compare with numbers", 17, id="metric-in-str"),
    pytest.param(
        "params.x IN (1, 'a')", "the IN list mixes strings and numbers", 16, id="mixed-list"
    ),
    pytest.param("params.x LIKE 5", "LIKE needs a quoted pattern", 14, id="like-number"),
    pytest.param("metrics. IC > 1", "expected a key right after 'metrics.'", 8, id="space-key"),
    pytest.param("tags.`` = 'a'", "empty key", 5, id="empty-key"),
    pytest.param(
        "status = 'x' status", "expected AND, OR or the end, found 'status'", 13, id="no-and"
    ),
    pytest.param("metrics.x > 1day", "invalid number '1day'", 12, id="invalid-number"),
    pytest.param("metrics.x > 1e999", "number out of range", 12, id="number-overflow"),
    pytest.param("and status = 'x'", "expected a filter clause", 0, id="leading-and"),
    pytest.param("status = 'x' and", "found end of input", 16, id="trailing-and"),
    pytest.param("status = 'a' OR OR status = 'b'", "found 'OR'", 16, id="double-or"),
    pytest.param("status IS NOTNULL", "expected NULL or NOT NULL after IS", 10, id="is-what"),
    pytest.param("tags.x IN ()", "empty IN list", 11, id="empty-list"),
    pytest.param("tags.x IN 'a'", "IN needs a list in parentheses", 10, id="in-no-list"),
    pytest.param("metrics.x IN (1 2)", "expected ',' or ')' in the IN list", 16, id="no-comma"),
    pytest.param("metrics.x = @", "unexpected character '@'", 12, id="bad-character"),
    pytest.param("metrics.x = ", "expected a value after =", 12, id="missing-value"),
    pytest.param("metrics.x = -", "expected a value after =", 12, id="lone-minus"),
]


@pytest.mark.parametrize(("text", "message", "position"), INVALID)
def test_parse_invalid(text: str, message: str, position: int) -> None:
    with pytest.raises(InvalidQueryError) as info:
        parse_filter(text)
    assert message in str(info.value)
    assert info.value.position == position
    assert info.value.query == text
    assert isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError)


def test_filter_size_is_capped_with_one_line() -> None:
    most = " and ".join(f"metrics.m{i} > 0" for i in range(MAX_CLAUSES))
    assert len(parse_filter(most).items) == MAX_CLAUSES  # type: ignore[union-attr]
    # 5,000 clauses then a syntax error: the cap is reported, so parsing stopped at it.
    huge = " or ".join(f"metrics.m{i} > 0" for i in range(5000)) + " and and"
    with pytest.raises(InvalidQueryError, match=f"more than {MAX_CLAUSES} comparisons") as info:
        parse_filter(huge)
    assert "\n" not in str(info.value)
    assert parse_filter("(" * MAX_DEPTH + "metrics.x > 0" + ")" * MAX_DEPTH) == C(M, "x", ">", 0)
    for depth in (MAX_DEPTH + 1, 330, 10_000):
        with pytest.raises(InvalidQueryError, match=f"more than {MAX_DEPTH} deep") as info:
            parse_filter("(" * depth + "metrics.x > 0" + ")" * depth)
        assert "\n" not in str(info.value)


ORDER_VALID = [
    pytest.param(["metrics.IC DESC"], [OrderKey(M, "IC", False)], id="desc"),
    pytest.param("params.lr asc", [OrderKey(P, "lr", True)], id="asc-string"),
    pytest.param(["attributes.start_time"], [OrderKey(A, "start_time", True)], id="default"),
    pytest.param(["-metrics.IC"], [OrderKey(M, "IC", False)], id="minus"),
    pytest.param(["metrics.`Rank IC` desc"], [OrderKey(M, "Rank IC", False)], id="quoted"),
    pytest.param(['tags."a b"'], [OrderKey(T, "a b", True)], id="double-quoted"),
    pytest.param(["created"], [OrderKey(A, "start_time", True)], id="alias"),
    pytest.param(
        "metrics.IC DESC, params.lr",
        [OrderKey(M, "IC", False), OrderKey(P, "lr", True)],
        id="comma-separated",
    ),
    pytest.param(
        ["metrics.IC", "params.IC", "tags.IC", "-run_name"],
        [OrderKey(M, "IC"), OrderKey(P, "IC"), OrderKey(T, "IC"), OrderKey(A, "run_name", False)],
        id="same-key-other-types",
    ),
    pytest.param(None, [], id="none"),
    pytest.param([], [], id="empty-list"),
    pytest.param("", [], id="empty-string"),
]


@pytest.mark.parametrize(("items", "expected"), ORDER_VALID)
def test_parse_order_by(items: Any, expected: list[OrderKey]) -> None:
    assert parse_order_by(items) == expected


ORDER_INVALID = [
    pytest.param(["metrics.IC", "metric.IC DESC"], "duplicate order-by key", 0, id="duplicate"),
    pytest.param("metrics.IC, -metrics.IC", "duplicate order-by key", 13, id="duplicate-comma"),
    pytest.param(["-metrics.IC DESC"], "not both", 0, id="minus-and-desc"),
    pytest.param(["metrics.IC DESCENDING"], "expected ASC, DESC or the end", 11, id="bad-dir"),
    pytest.param(["foo"], "unknown attribute 'foo'", 0, id="unknown-attribute"),
    pytest.param(["metrics.IC DESC params.lr"], "found 'params.lr'", 16, id="missing-comma"),
    pytest.param(["DESC"], "expected an order-by key", 0, id="keyword"),
]


@pytest.mark.parametrize(("items", "message", "position"), ORDER_INVALID)
def test_parse_order_by_invalid(items: Any, message: str, position: int) -> None:
    with pytest.raises(InvalidQueryError) as info:
        parse_order_by(items)
    assert message in str(info.value)
    assert info.value.position == position


def test_error_message_points_at_the_token() -> None:
    with pytest.raises(InvalidQueryError) as info:
        parse_filter("metrics.IC > '0.05'")
    assert str(info.value).splitlines()[1:] == ["  metrics.IC > '0.05'", "               ^"]


# ---------------------------------------------------------------------------------------------
# The Python interpreter


def view(
    run_id: str = "r",
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    **attributes: Any,
) -> RunView:
    attrs = {"run_id": run_id, "run_name": "n", "status": "FINISHED", "experiment_id": "1",
             "start_time": 0, "end_time": None, "heartbeat": None,
             "lifecycle": "active"}  # fmt: skip
    return RunView(metrics or {}, params or {}, tags or {}, {**attrs, **attributes})


NAN_RUN = view(metrics={"x": math.nan})
FUTURE = 4_000_000_000_000  # a heartbeat in 2096: never stale
PREDICATES = [
    pytest.param("metrics.x != 1", NAN_RUN, True, id="nan-ne"),
    pytest.param("metrics.x NOT IN (1)", NAN_RUN, True, id="nan-not-in"),
    pytest.param("metrics.x = 1", NAN_RUN, False, id="nan-eq"),
    pytest.param("metrics.x IN (1)", NAN_RUN, False, id="nan-in"),
    pytest.param("metrics.x < 1", NAN_RUN, False, id="nan-lt"),
    pytest.param("metrics.x IS NOT NULL", NAN_RUN, True, id="nan-is-present"),
    pytest.param("metrics.x IS NULL", NAN_RUN, False, id="nan-is-not-missing"),
    pytest.param("metrics.y != 1", NAN_RUN, False, id="missing-ne"),
    pytest.param("metrics.y IS NULL", NAN_RUN, True, id="missing-is-null"),
    pytest.param("metrics.x > 1e300", view(metrics={"x": math.inf}), True, id="inf"),
    pytest.param("tags.t NOT IN ('a')", view(), False, id="missing-tag-not-in"),
    pytest.param("params.lr < 0.01", view(params={"lr": "1e-3"}), True, id="param-numeric"),
    pytest.param("params.lr != 0.1", view(params={"lr": "abc"}), False, id="param-not-number"),
    pytest.param("params.lr = '1e-3'", view(params={"lr": "1e-3"}), True, id="param-string"),
    pytest.param("params.lr = 0.001", view(params={"lr": "1e-3"}), True, id="param-num-eq"),
    pytest.param("params.n IN (10, 20)", view(params={"n": "10"}), True, id="param-num-in"),
    pytest.param("tags.t LIKE 'Ab%'", view(tags={"t": "abc"}), False, id="like-case"),
    pytest.param("tags.t ILIKE 'Ab%'", view(tags={"t": "abc"}), True, id="ilike"),
    pytest.param("tags.t ILIKE 'É'", view(tags={"t": "é"}), False, id="ilike-ascii-only"),
    pytest.param("tags.t LIKE 'a_c'", view(tags={"t": "aéc"}), True, id="underscore-one-char"),
    pytest.param("tags.t LIKE 'a_c'", view(tags={"t": "ac"}), False, id="underscore-needs-one"),
    pytest.param("tags.t LIKE '1\\%'", view(tags={"t": "1%"}), False, id="backslash-literal"),
    pytest.param("tags.t LIKE '1\\%'", view(tags={"t": "1\\2"}), True, id="backslash-then-wild"),
    pytest.param("tags.t LIKE '1!%' ESCAPE '!'", view(tags={"t": "1%"}), True, id="escaped-pct"),
    pytest.param("tags.t LIKE '1!%' ESCAPE '!'", view(tags={"t": "12"}), False, id="escaped-lit"),
    pytest.param("tags.t LIKE 'a!!' ESCAPE '!'", view(tags={"t": "a!"}), True, id="escaped-esc"),
    pytest.param("tags.t ILIKE 'Xa%' ESCAPE 'X'", view(tags={"t": "A%"}), True, id="escape-letter"),
    pytest.param("status = 'finished'", view(), True, id="status-case"),
    pytest.param("status LIKE 'fin%'", view(), True, id="status-like-case"),
    pytest.param("status IN ('failed', 'finished')", view(), True, id="status-in-case"),
    pytest.param("status != 'Finished'", view(), False, id="status-ne-case"),
    pytest.param("status = 'stale'", view(status="RUNNING", heartbeat=0), True, id="stale"),
    pytest.param("status = 'STALE'", view(status="RUNNING", heartbeat=FUTURE), False, id="fresh"),
    pytest.param("status = 'stale'", view(status="RUNNING", start_time=0), True, id="stale-legacy"),
    pytest.param("status = 'stale'", view(heartbeat=0), False, id="stale-only-running"),
    pytest.param("status = 'running'", view(status="RUNNING", heartbeat=0), True, id="stale-runs"),
    pytest.param("status != 'stale'", view(status="RUNNING", heartbeat=0), False, id="not-stale"),
    pytest.param(
        "status != 'stale'", view(status="RUNNING", heartbeat=FUTURE), True, id="not-stale-fresh"
    ),
    pytest.param(
        "status NOT IN ('failed', 'stale')", view(status="RUNNING", heartbeat=0), False, id="nin"
    ),
    pytest.param("status LIKE 'st%'", view(status="RUNNING", heartbeat=0), True, id="like-stale"),
    pytest.param("status NOT ILIKE '%ale'", view(status="RUNNING"), False, id="not-ilike-stale"),
    pytest.param("tags.t LIKE '%'", view(tags={"t": "a\nb"}), True, id="percent-newline"),
    pytest.param("tags.t NOT LIKE 'a%'", view(tags={"t": "ba"}), True, id="not-like"),
    pytest.param("experiment_id = '01'", view(), False, id="experiment-id-exact"),
    pytest.param("experiment_id != '01'", view(), True, id="experiment-id-ne"),
    pytest.param("end_time IS NULL", view(), True, id="end-time-null"),
    pytest.param("end_time != 3", view(), False, id="null-attribute-ne"),
    pytest.param("start_time >= 0 OR metrics.x > 1", view(), True, id="or"),
    pytest.param("start_time >= 0 AND metrics.x > 1", view(), False, id="and"),
]


@pytest.mark.parametrize(("text", "run", "expected"), PREDICATES)
def test_predicate(text: str, run: RunView, expected: bool) -> None:
    assert to_predicate(parse_filter(text))(run) is expected


def test_predicate_of_empty_filter_matches_everything() -> None:
    assert to_predicate(None)(view())


def test_sort_runs_puts_values_then_nan_then_missing_in_both_directions() -> None:
    runs = [
        view("a", metrics={"m": 1.0}, start_time=1),
        view("b", metrics={"m": math.nan}, start_time=1),
        view("c", start_time=1),
        view("d", metrics={"m": 3.0}, start_time=1),
        view("e", metrics={"m": 1.0}, start_time=2),
        view("f", metrics={"m": 1.0}, start_time=None),
    ]
    asc = [r.attributes["run_id"] for r in sort_runs(runs, parse_order_by("metrics.m"))]
    desc = [r.attributes["run_id"] for r in sort_runs(runs, parse_order_by("-metrics.m"))]
    assert asc == ["e", "a", "f", "d", "b", "c"]
    assert desc == ["d", "e", "a", "f", "b", "c"]
    plain = [r.attributes["run_id"] for r in sort_runs(runs)]
    assert plain == ["e", "a", "b", "c", "d", "f"]


def test_sql_uses_bound_parameters_only() -> None:
    evil = "x'); DROP TABLE runs; --"
    expr = And((C(T, evil, "=", evil), C(P, evil, "LIKE", evil), C(A, "run_name", "IN", (evil,))))
    stmt = select_runs(format_filter(expr), [OrderKey(P, evil)], [1], ("active",))
    for dialect in (sa.dialects.sqlite.dialect(), sa.dialects.postgresql.dialect()):
        assert "DROP TABLE" not in str(stmt.compile(dialect=dialect))
    assert filter_clause(None) is not None


def test_run_view_from_run_entity() -> None:
    from tracker.entities import Run, RunData, RunInfo, RunStatus

    info = RunInfo("abc", "7", "my run", RunStatus.FAILED, start_time=5)
    run = RunView.from_run(Run(info, RunData({"lr": "0.1"}, {"IC": 0.2}, {"t": "x"})))
    text = "status = 'FAILED' AND name LIKE 'my%' AND experiment_id = '7' AND params.lr = 0.1"
    assert to_predicate(parse_filter(text + " AND metrics.IC > 0.1 AND tags.t = 'x'"))(run)
    assert run.attributes["lifecycle"] == "active"


def test_postgres_sorts_strings_by_code_point_and_folds_ascii_only() -> None:
    from sqlalchemy.dialects import postgresql

    stmt = select_runs("name ILIKE 'a%'", ["run_name", "tags.t"], dialect_name="postgresql")
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert sql.count('COLLATE "C"') == 3  # run_name, tags.t and the run id tie-breaker
    assert "translate(runs.name" in sql


# ---------------------------------------------------------------------------------------------
# Round trip: format_filter / parse_filter

NUMBERS = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
ANY_TEXT = st.text(max_size=6)
STRING_ATTRS = ["run_id", "run_name", "status", "experiment_id", "lifecycle"]
NUMERIC_ATTRS = ["start_time", "end_time", "heartbeat"]
NUMERIC_OPS = ["=", "!=", "<", "<=", ">", ">="]
STRING_OPS = ["=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]
LIST_OPS = ["IN", "NOT IN"]
NULL_OPS = ["IS NULL", "IS NOT NULL"]


def comparisons(
    metric_keys: st.SearchStrategy[str],
    param_keys: st.SearchStrategy[str],
    tag_keys: st.SearchStrategy[str],
    numbers: st.SearchStrategy[Any],
    strings: st.SearchStrategy[str],
    patterns: st.SearchStrategy[str],
    attr_strings: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Comparison]:
    """Well-typed comparisons (what the parser accepts), every operator about equally likely."""
    keys = {M: metric_keys, P: param_keys, T: tag_keys}

    @st.composite
    def comparison(draw: st.DrawFn) -> Comparison:
        kind = draw(st.sampled_from([M, P, T, A]))
        if kind == A:
            key = draw(st.sampled_from(STRING_ATTRS + NUMERIC_ATTRS))
            numeric = key in NUMERIC_ATTRS
        else:
            key = draw(keys[kind])
            numeric = kind == M or (kind == P and draw(st.booleans()))
        ops = NUMERIC_OPS if numeric else STRING_OPS
        op = draw(st.sampled_from(ops + LIST_OPS + NULL_OPS))
        if op in NULL_OPS:
            return C(kind, key, op)
        values = numbers if numeric else strings
        if kind == A and not numeric and attr_strings is not None:
            values = attr_strings
        if op in LIST_OPS:
            return C(kind, key, op, tuple(draw(st.lists(values, min_size=1, max_size=3))))
        if "LIKE" not in op:
            return C(kind, key, op, draw(values))
        pattern, escape = draw(patterns), draw(ESCAPES)
        return C(kind, key, op, pattern, escape if _escapes_all(pattern, escape) else "")

    return comparison()


ESCAPES = st.sampled_from(["", "", "!", "\\", "%", "a"])


def _escapes_all(pattern: str, escape: str) -> bool:
    """Whether ``escape`` leaves nothing dangling at the end of ``pattern`` (the parser's rule)."""
    i = 0
    while i < len(pattern):
        i += 2 if pattern[i] == escape else 1
    return i == len(pattern)


def expressions(leaves: st.SearchStrategy[Comparison]) -> st.SearchStrategy[Expr]:
    def combine(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        items = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.builds(And, items) | st.builds(Or, items)

    return st.recursive(leaves, combine, max_leaves=6)


ANY_KEY = st.text(min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(comparisons(ANY_KEY, ANY_KEY, ANY_KEY, NUMBERS, ANY_TEXT, ANY_TEXT)))
def test_format_then_parse_is_identity(expr: Expr) -> None:
    text = format_filter(expr)
    assert parse_filter(text) == expr
    assert format_filter(parse_filter(text)) == text


# ---------------------------------------------------------------------------------------------
# Differential test: SQL (SQLite, PostgreSQL) against the Python interpreter

ALPHABET = "aAbB%_\\*?[]'\" éÉß.0-"
POOL = ["", "a", "A", "ab", "aB", "é", "É", "a%b", "a_b", "x\\y", "ß", "*", "[a]"]
SHORT = st.one_of(st.sampled_from(POOL), st.text(ALPHABET, max_size=4))
PATTERNS = st.one_of(
    st.sampled_from(["%", "a%", "%b", "_", "a_", "%é%", "A%", "\\%%", "%\\_", "[%", "*", "x\\"]),
    st.text(ALPHABET + "%%__", max_size=5),
)
METRIC_KEYS = ["IC", "Rank IC", "1day.ret"]
PARAM_KEYS = ["lr", "p.x"]
TAG_KEYS = ["t", "a b"]
PARAM_VALUES = st.one_of(
    SHORT,
    st.sampled_from(
        [
            "0.1",
            "1e-3",
            "10",
            "-5",
            "+2",
            ".5",
            "5.",
            "1_0",
            " 1",
            "nan",
            "inf",
            "0x10",
            "1e999",
            "١",
            "Infinity",
            "-0",
        ]
    ),  # fmt: skip
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-3, 3).map(str),
)
METRIC_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, -1.0]),
    st.floats(allow_nan=False),
)
FILTER_NUMBERS = st.one_of(st.sampled_from([0, 1, -1, 0.5, 0.1, 10, 2, 1_700_000_000_000]), NUMBERS)
TIMES = st.one_of(st.none(), st.sampled_from([0, 1, 2, 1_700_000_000_000, FUTURE]))
STATUSES = ["SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED"]

RUNS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.text("abcAB01", min_size=1, max_size=3),
            "name": SHORT,
            "status": st.sampled_from(STATUSES),
            "experiment_id": st.sampled_from([1, 2, 3]),
            "lifecycle": st.sampled_from(["active", "deleted"]),
            "start_time": TIMES,
            "end_time": TIMES,
            "heartbeat": TIMES,
            "metrics": st.dictionaries(st.sampled_from(METRIC_KEYS), METRIC_VALUES, max_size=3),
            "params": st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUES, max_size=2),
            "tags": st.dictionaries(st.sampled_from(TAG_KEYS), SHORT, max_size=2),
        }
    ),
    min_size=2,
    max_size=10,
    unique_by=lambda run: run["id"],
)


def _patterns_from(value: str) -> list[str]:
    """LIKE patterns that (nearly) match ``value``: exact, other case, prefix, suffix, one char."""
    found = [value, value.swapcase(), value[:1] + "%", "%" + value[-1:]]
    found += ["_" + value[1:], value[:1].swapcase() + "%"]
    return found


def _mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 3).flatmap(lambda i: usual if i else other)


def queries_for(runs: list[dict[str, Any]]) -> st.SearchStrategy[list[tuple]]:
    """Queries whose values mostly come from the runs themselves, so that comparisons split them."""
    texts = sorted(
        {r[f] for r in runs for f in ("id", "name", "status")}
        | {v for r in runs for v in [*r["params"].values(), *r["tags"].values()]}
    )
    numbers = {v for r in runs for v in r["metrics"].values() if math.isfinite(v)}
    numbers |= {n for r in runs for v in r["params"].values() if (n := param_number(v)) is not None}
    numbers |= {r[f] for r in runs for f in NUMERIC_ATTRS if r[f] is not None}
    patterns = sorted({p for t in texts for p in _patterns_from(t)})
    local_numbers = st.sampled_from(sorted(numbers)) if numbers else FILTER_NUMBERS
    local_texts = st.sampled_from(texts) if texts else SHORT
    local_patterns = st.sampled_from(patterns) if patterns else PATTERNS
    filters = expressions(
        comparisons(
            st.sampled_from([*METRIC_KEYS, "absent"]),
            st.sampled_from([*PARAM_KEYS, "absent"]),
            st.sampled_from([*TAG_KEYS, "absent"]),
            _mostly(local_numbers, FILTER_NUMBERS),
            _mostly(local_texts, st.one_of(SHORT, PARAM_VALUES)),
            _mostly(local_patterns, PATTERNS),
            attr_strings=_mostly(
                local_texts,
                st.sampled_from(
                    [*STATUSES, "stale", "running", "Stale", "active", "deleted", "1", "01", "2"]
                ),
            ),
        )
    )
    return st.lists(
        st.tuples(
            st.integers(0, 3).flatmap(lambda i: filters if i else st.none()),
            ORDERS,
            st.none() | st.lists(st.sampled_from([1, 2, 3]), unique=True),
            st.none() | st.sampled_from([("active",), ("deleted",), ("active", "deleted")]),
            st.none() | st.integers(0, 4),
        ),
        min_size=1,
        max_size=4,
    )


ORDER_FIELDS = (
    [(M, k) for k in [*METRIC_KEYS, "absent"]]
    + [(P, k) for k in PARAM_KEYS]
    + [(T, k) for k in TAG_KEYS]
    + [(A, k) for k in STRING_ATTRS + NUMERIC_ATTRS]
)
ORDERS = st.lists(
    st.tuples(st.sampled_from(ORDER_FIELDS), st.booleans()),
    min_size=1,
    max_size=3,
    unique_by=lambda item: item[0],
).map(lambda items: [OrderKey(kind, key, asc) for (kind, key), asc in items])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = sa.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        models.metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    base = os.environ.get("TRACKER_TEST_POSTGRES_URI")
    if not base:
        pytest.skip("set TRACKER_TEST_POSTGRES_URI to run the SQL tests on PostgreSQL")
    schema = f"search_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    eng = sa.create_engine(base, connect_args={"options": f"-csearch_path={schema}"})
    try:
        models.metadata.create_all(eng)
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def _load(engine: sa.Engine, runs: list[dict[str, Any]]) -> list[RunView]:
    t = models.metadata.tables
    with engine.begin() as conn:
        for name in ("latest_metrics", "params", "tags", "runs", "experiments"):
            conn.execute(t[name].delete())
        conn.execute(
            t["experiments"].insert(),
            [{"id": i, "name": f"e{i}", "creation_time": 0} for i in (1, 2, 3, 10)],
        )
        if not runs:
            return []
        columns = ("id", "name", "status", "experiment_id", "lifecycle", "start_time",
                   "end_time", "heartbeat")  # fmt: skip
        conn.execute(
            t["runs"].insert(),
            [{"pk": pk, **{c: r[c] for c in columns}} for pk, r in enumerate(runs, 1)],
        )
        metrics = [
            {"run_pk": pk, "key": k, "step": 0, "timestamp": 0, "value": None if v != v else v}
            for pk, r in enumerate(runs, 1)
            for k, v in r["metrics"].items()
        ]
        params = [
            {"run_pk": pk, "key": k, "value": v, "value_num": param_number(v)}
            for pk, r in enumerate(runs, 1)
            for k, v in r["params"].items()
        ]
        tags = [
            {"run_pk": pk, "key": k, "value": v}
            for pk, r in enumerate(runs, 1)
            for k, v in r["tags"].items()
        ]
        for name, rows in (("latest_metrics", metrics), ("params", params), ("tags", tags)):
            if rows:
                conn.execute(t[name].insert(), rows)
    attributes = ("start_time", "end_time", "heartbeat", "status", "lifecycle")
    return [
        RunView(
            r["metrics"],
            r["params"],
            r["tags"],
            {
                "run_id": r["id"],
                "run_name": r["name"],
                "experiment_id": str(r["experiment_id"]),
                **{a: r[a] for a in attributes},
            },  # fmt: skip
        )
        for r in runs
    ]


def _leaves(expr: Expr | None) -> list[Comparison]:
    if expr is None:
        return []
    if isinstance(expr, Comparison):
        return [expr]
    return [leaf for item in expr.items for leaf in _leaves(item)]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(runs=RUNS, data=st.data())
def test_sql_agrees_with_python(
    engine: sa.Engine, runs: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Same runs in the same order from SQL as from ``to_predicate`` + ``sort_runs``, for the
    whole expression and for each of its comparisons alone."""
    views = _load(engine, runs)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        for expr, order, experiments, lifecycles, limit in data.draw(queries_for(runs)):
            checks = [(expr, order, experiments, lifecycles, limit)]
            checks += [(leaf, [], None, None, None) for leaf in _leaves(expr)]
            for expr, order, experiments, lifecycles, limit in checks:
                text = format_filter(expr)
                assert parse_filter(text) == expr
                predicate = to_predicate(parse_filter(text))
                selected = [
                    v
                    for v in views
                    if predicate(v)
                    and (experiments is None or int(v.attributes["experiment_id"]) in experiments)
                    and (lifecycles is None or v.attributes["lifecycle"] in lifecycles)
                ]
                expected = [v.attributes["run_id"] for v in sort_runs(selected, order)]
                stmt = select_runs(text, order, experiments, lifecycles, limit, dialect)
                got = [row.id for row in conn.execute(stmt)]
                context = f"filter={text!r} order={order}"
                if limit is None:
                    assert sorted(got) == sorted(expected), context
                assert got == expected[:limit], context
                if order and order[0].kind != A:
                    having, without = select_runs_key_first(
                        parse_filter(text), order, experiments, lifecycles, limit, dialect
                    )
                    both = [row.id for q in (having, without) for row in conn.execute(q)]
                    assert both[:limit] == expected[:limit], f"key first: {context}"
                if isinstance(expr, Comparison) and 0 < len(selected) < len(views):
                    event(f"a {expr.kind} comparison splits the runs")


@st.composite
def value_and_pattern(draw: st.DrawFn) -> tuple[str, str, str]:
    """A string, a LIKE pattern made from it and the pattern's escape character (or none):
    characters kept, case-swapped, dropped, or replaced by wildcards, with the wildcards and
    the escape character escaped when kept."""
    value = draw(st.text(ALPHABET + "ǅΣσςxyZ!", max_size=6))
    escape = draw(st.sampled_from(["", "\\", "!", "x"]))
    parts = []
    for ch in value:
        literal = escape + ch if escape and ch in ("%", "_", escape) else ch
        how = draw(st.sampled_from(["keep", "swap", "one", "any", "drop", "raw"]))
        parts.append({"keep": literal, "swap": literal.swapcase(), "one": "_", "any": "%",
                      "drop": "", "raw": ch}[how])  # fmt: skip
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["%", "_", "\\", "x", "X", "!"])))
    pattern = "".join(parts)
    return value, pattern, escape if _escapes_all(pattern, escape) else ""


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=value_and_pattern())
def test_like_agrees_with_python(engine: sa.Engine, case: tuple[str, str, str]) -> None:
    value, pattern, escape = case
    run = {"id": "r", "name": value, "status": "FINISHED", "experiment_id": 1,
           "lifecycle": "active", "start_time": None, "end_time": None, "heartbeat": None,
           "metrics": {}, "params": {}, "tags": {"t": value}}  # fmt: skip
    (view,) = _load(engine, [run])
    with engine.connect() as conn:
        for op in ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"):
            for kind, key in ((T, "t"), (A, "run_name")):
                expr = C(kind, key, op, pattern, escape)
                stmt = select_runs(expr, dialect_name=engine.dialect.name)
                got = [row.id for row in conn.execute(stmt)] == ["r"]
                assert got is to_predicate(expr)(view), format_filter(expr)


# ---------------------------------------------------------------------------------------------
# Known answers on a fixed population, checked for both interpreters on every backend


def _run(run_id: str, name: str, status: str, exp: int, start: int | None, **rest: Any) -> dict:
    return {"id": run_id, "name": name, "status": status, "experiment_id": exp,
            "lifecycle": rest.pop("lifecycle", "active"), "start_time": start,
            "end_time": rest.pop("end", None), "heartbeat": None, "metrics": {}, "params": {},
            "tags": {}, **rest}  # fmt: skip


FIXED = [
    _run("r1", "Alpha", "FINISHED", 1, 10, end=20, metrics={"IC": 0.1, "loss": math.nan},
         params={"lr": "0.01", "model": "LGBModel"}, tags={"note": "100%"}),
    _run("r2", "alpha_2", "FAILED", 1, 20, metrics={"IC": -0.2},
         params={"lr": "1e-3", "model": "lgb*"}, tags={"note": "abc"}),
    _run("r3", "Beta[1]", "RUNNING", 2, None, metrics={"IC": math.inf, "loss": 1.0},
         params={"lr": "abc"}, tags={"note": "ÉTÉ"}),
    _run("r4", "ß?", "FINISHED", 2, 20, lifecycle="deleted", metrics={"IC": math.nan},
         params={"model": "x\\y"}),
    _run("r5", "gamma", "KILLED", 10, 5, params={"lr": "0.1"}, tags={"note": "a_c"}),
]  # fmt: skip

KNOWN = [
    ("metrics.IC > 0", "r1 r3"),
    ("metrics.IC != 0.1", "r2 r3 r4"),
    ("metrics.IC IS NOT NULL", "r1 r2 r3 r4"),
    ("metrics.IC IS NULL", "r5"),
    ("metrics.loss NOT IN (1)", "r1"),
    ("metrics.loss != 1 AND metrics.loss != 2", "r1"),
    ("metrics.IC >= 1e308", "r3"),
    ("params.lr < 0.05", "r1 r2"),
    ("params.lr != 0.01", "r2 r5"),
    ("params.lr = '1e-3'", "r2"),
    ("params.lr = 0.001", "r2"),
    ("params.lr IN (0.1, 0.01)", "r1 r5"),
    ("params.model LIKE 'lgb%'", "r2"),
    ("params.model LIKE 'LGB%'", "r1"),
    ("params.model ILIKE 'lgb%'", "r1 r2"),
    ("params.model LIKE 'lgb*'", "r2"),
    ("params.model LIKE 'lgb_'", "r2"),
    (r"params.model LIKE 'x\y'", "r4"),
    (r"params.model = 'x\y'", "r4"),
    (r"params.model = 'x\\y'", ""),
    (r"tags.note LIKE '100\%'", ""),
    ("tags.note LIKE '100!%' ESCAPE '!'", "r1"),
    ("tags.note LIKE 'a_c'", "r2 r5"),
    (r"tags.note LIKE 'a\_c'", ""),
    ("tags.note LIKE 'a!_c' ESCAPE '!'", "r5"),
    ("tags.note ILIKE 'été'", ""),
    ("tags.note ILIKE 'ÉtÉ'", "r3"),
    ("tags.note != 'abc'", "r1 r3 r5"),
    ("tags.note NOT LIKE '%c'", "r1 r3"),
    ("name LIKE 'Beta[%'", "r3"),
    ("name LIKE 'ß_'", "r4"),
    ("name ILIKE 'ALPHA%'", "r1 r2"),
    ("name LIKE 'alpha%'", "r2"),
    ("experiment_id = '1'", "r1 r2"),
    ("experiment_id = '01'", ""),
    ("experiment_id != '01'", "r1 r2 r3 r4 r5"),
    ("experiment_id IN ('2', 'x')", "r3 r4"),
    ("experiment_id LIKE '1%'", "r1 r2 r5"),
    ("end_time IS NULL", "r2 r3 r4 r5"),
    ("start_time > 5 AND start_time < 20.5", "r1 r2 r4"),
    ("start_time > 19.5", "r2 r4"),
    ("status IN ('FAILED', 'KILLED') OR lifecycle = 'deleted'", "r2 r4 r5"),
    ("status = 'finished'", "r1 r4"),
    ("status ILIKE 'F%' AND status NOT LIKE '%ed'", ""),
    ("status LIKE 'f%'", "r1 r2 r4"),
    ("status = 'stale'", "r3"),
    ("status = 'running'", "r3"),
    ("status != 'stale'", "r1 r2 r4 r5"),
    ("status IN ('stale', 'killed')", "r3 r5"),
    ("(metrics.IC > 0 OR params.lr < 0.05) AND status != 'RUNNING'", "r1 r2"),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(*k, id=k[0]) for k in KNOWN])
def test_known_filter_results(engine: sa.Engine, text: str, expected: str) -> None:
    views = _load(engine, FIXED)
    predicate = to_predicate(parse_filter(text))
    assert {v.attributes["run_id"] for v in views if predicate(v)} == set(expected.split())
    with engine.connect() as conn:
        got = {row.id for row in conn.execute(select_runs(text, dialect_name=engine.dialect.name))}
    assert got == set(expected.split())


KNOWN_ORDER = [
    (["metrics.IC DESC"], "r3 r1 r2 r4 r5"),
    (["metrics.IC"], "r2 r1 r3 r4 r5"),
    (["params.lr"], "r1 r5 r2 r3 r4"),
    ([], "r2 r4 r1 r5 r3"),
    (["-experiment_id"], "r5 r4 r3 r2 r1"),
    (["run_name"], "r1 r3 r2 r5 r4"),
    (["end_time DESC"], "r1 r2 r4 r5 r3"),
    (["tags.note DESC", "metrics.loss"], "r3 r2 r5 r1 r4"),
    (["metrics.loss"], "r3 r1 r2 r4 r5"),
    (["-metrics.loss"], "r3 r1 r2 r4 r5"),
]


@pytest.mark.parametrize(
    ("order", "expected"), [pytest.param(*k, id=",".join(k[0]) or "none") for k in KNOWN_ORDER]
)
def test_known_order(engine: sa.Engine, order: list[str], expected: str) -> None:
    views = _load(engine, FIXED)
    keys = parse_order_by(order)
    assert [v.attributes["run_id"] for v in sort_runs(views, keys)] == expected.split()
    with engine.connect() as conn:
        stmt = select_runs(None, keys, dialect_name=engine.dialect.name)
        assert [row.id for row in conn.execute(stmt)] == expected.split()
        stmt = select_runs(None, keys, [1, 2], ("active",), 2, engine.dialect.name, offset=1)
        assert [row.id for row in conn.execute(stmt)] == [
            r for r in expected.split() if r not in ("r4", "r5")
        ][1:3]
