"""The filter language's vocabulary and syntax tree: fields, operators, limits, the expression
nodes the parser builds and every backend compiles, and the text rules (LIKE patterns, ASCII case
folding, numeric params) they share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracker.validation import as_number

ATTRIBUTES = ("run_id", "run_name", "status", "experiment_id", "start_time", "end_time",
              "heartbeat", "lifecycle")  # fmt: skip
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "heartbeat"})
ATTR_NAMES = {a: a for a in ATTRIBUTES} | {
    "id": "run_id", "name": "run_name", "run name": "run_name", "created": "start_time",
    "lifecycle_stage": "lifecycle",
}  # fmt: skip
TYPES = {"metrics": "metric", "metric": "metric", "params": "param", "param": "param",
         "parameters": "param", "parameter": "param", "tags": "tag", "tag": "tag",
         "attributes": "attribute", "attribute": "attribute", "attr": "attribute",
         "run": "attribute"}  # fmt: skip
PLURAL = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes"}

COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
LIKE_OPS = ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")
LIST_OPS = ("IN", "NOT IN")
NULL_OPS = ("IS NULL", "IS NOT NULL")
NUMERIC_KIND_OPS = COMPARE_OPS + LIST_OPS + NULL_OPS
STRING_KIND_OPS = ("=", "!=", *LIKE_OPS, *LIST_OPS, *NULL_OPS)
PARAM_OPS = COMPARE_OPS + LIKE_OPS + LIST_OPS + NULL_OPS
ALL_OPS = "=, !=, <, <=, >, >=, LIKE, ILIKE, NOT LIKE, NOT ILIKE, IN, NOT IN, IS NULL, IS NOT NULL"
KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ESCAPE", "ASC", "DESC"}
)
MAX_EXACT_INT = 2**53
#: Bounds on a filter's size: enough for any filter a person writes, and they keep parsing,
#: planning (PostgreSQL's grows fast with the number of subqueries) and recursion bounded.
MAX_CLAUSES = 256
MAX_DEPTH = 32
RUN_NAME_TAG = "mlflow.runName"  # MLflow's tag holding the run name
STALE = "STALE"  # the status ``tracker ls`` shows for a RUNNING run whose heartbeat is lost

# sqlparse's string and quoted-name tokens, which MLflow's parser uses: a doubled quote (and, in
# strings, a backslash-quote) does not end the token; the text between the quotes is the value.
QUOTED_RE = {
    "'": re.compile(r"'(?:''|\\'|[^'])*'"),
    '"': re.compile(r'"(?:""|\\"|[^"])*"'),
    "`": re.compile(r"`(?:``|[^`])*`"),
}
BARE_KEY_RE = re.compile(r"[\w.\-/]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Comparison:
    """``kind`` is metric, param, tag or attribute; ``value`` is a str, int, float, a tuple of
    them (IN, NOT IN) or None (IS NULL, IS NOT NULL); ``escape`` is a LIKE pattern's escape
    character, or empty for none."""

    kind: str
    key: str
    op: str
    value: object = None
    escape: str = ""


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Comparison | And | Or


@dataclass(frozen=True)
class OrderKey:
    kind: str
    key: str
    ascending: bool = True


def param_number(value: str) -> float | None:
    """A param's value as a number, or None: what numeric param comparisons use. It is the same
    reading the SQL store keeps in ``params.value_num`` (:func:`tracker.validation.as_number`)."""
    return as_number(value)


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters only: the case folding of ILIKE."""
    return text.translate(_ASCII_LOWER)


def ascii_upper(text: str) -> str:
    return text.translate(_ASCII_UPPER)


def like_parts(pattern: str, escape: str = "") -> list[tuple[bool, str]]:
    """Split a LIKE pattern into ``(is_wildcard, char)``: ``%`` and ``_`` are wildcards unless
    ``escape`` (a character, or empty for none) precedes them; it makes any next character
    literal. The parser refuses a pattern ending in its escape character."""
    parts, chars = [], iter(pattern)
    for c in chars:
        if c == escape:
            parts.append((False, next(chars, c)))
        else:
            parts.append((c in "%_", c))
    return parts
