"""The run filter and order-by language, shared by every backend.

It is a compatible superset of MLflow's ``search_runs`` filter. Grammar::

    filter   := or_expr | <empty>
    or_expr  := and_expr (OR and_expr)*              AND binds tighter than OR
    and_expr := term (AND term)*
    term     := '(' or_expr ')' | clause
    clause   := field op value | field IS [NOT] NULL
    field    := [type '.'] key                       no type means an attribute
    type     := metrics | metric | params | param | parameters | parameter
              | tags | tag | attributes | attribute | attr | run
    key      := bare key (letters, digits, _ . - /), or `quoted` or "quoted"
    op       := = | == | != | <> | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE | [NOT] IN
    value    := 'string' | "string" | number | '(' value (',' value)* ')'

Keywords, types and attribute names are case-insensitive; metric, param and tag keys are not. The
first dot ends the type: ``metrics.1day.excess_return.mean`` is the metric
``1day.excess_return.mean``. Inside quotes, a doubled quote or a backslash escapes the quote,
``\\\\`` is a backslash, and any other backslash stays as it is. Numbers are decimal literals
(``-1``, ``.5``, ``1e-3``); integers beyond 2**53 are read as floats.

What each type accepts:

- ``metrics``: ``= != < <= > >= IN NOT IN`` with numbers (``metrics.IC > 0.05``, never
  ``'0.05'``); ``IS NULL`` / ``IS NOT NULL`` test whether the run logged the metric. NaN never
  matches a comparison, but counts as logged.
- ``params``: with quoted strings ``= != LIKE ILIKE IN`` (and the ``NOT`` forms); with unquoted
  numbers ``= != < <= > >= IN NOT IN`` compare numerically, and only params whose value reads as a
  number (:func:`param_number`) can match: ``params.lr <= 0.01``. An IN list is all strings or all
  numbers. ``IS [NOT] NULL`` tests whether the run has the param.
- ``tags``: like params, strings only.
- attributes ``run_id`` (``id``), ``run_name`` (``name``, ``"run name"``), ``status``,
  ``experiment_id``, ``lifecycle`` (``lifecycle_stage``) are strings, like tags; ``start_time``
  (``created``), ``end_time`` and ``heartbeat`` are numbers (epoch milliseconds) and may be NULL.

A comparison on a metric, param, tag or NULL attribute that the run does not have is false, even
for ``!=`` and ``NOT IN``. ``LIKE`` is case-sensitive; ``%`` matches any text, ``_`` one
character, and a backslash makes the next character literal (``'100\\%'``). ``ILIKE`` also
ignores the case of ASCII letters (only those: ``'é'`` does not match ``'É'``).

Order-by items are ``field [ASC|DESC]`` or ``-field`` (descending), for example
``["metrics.IC DESC", "params.lr"]``; a field may appear once. Strings sort by code point, params
as strings, experiment ids as numbers. Runs with a value come first, then NaN, then runs without
one, in either direction; ties go to the latest ``start_time``, then the smallest ``run_id``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracker.errors import InvalidQueryError
from tracker.validation import as_number

if TYPE_CHECKING:
    from tracker.entities import Run

ATTRIBUTES = ("run_id", "run_name", "status", "experiment_id", "start_time", "end_time",
              "heartbeat", "lifecycle")  # fmt: skip
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "heartbeat"})
_ATTR_NAMES = {a: a for a in ATTRIBUTES} | {
    "id": "run_id", "name": "run_name", "run name": "run_name", "created": "start_time",
    "lifecycle_stage": "lifecycle",
}  # fmt: skip
_TYPES = {"metrics": "metric", "metric": "metric", "params": "param", "param": "param",
          "parameters": "param", "parameter": "param", "tags": "tag", "tag": "tag",
          "attributes": "attribute", "attribute": "attribute", "attr": "attribute",
          "run": "attribute"}  # fmt: skip
_PLURAL = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes"}

COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
LIKE_OPS = ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE")
LIST_OPS = ("IN", "NOT IN")
NULL_OPS = ("IS NULL", "IS NOT NULL")
_NUMERIC_KIND_OPS = COMPARE_OPS + LIST_OPS + NULL_OPS
_STRING_KIND_OPS = ("=", "!=", *LIKE_OPS, *LIST_OPS, *NULL_OPS)
_PARAM_OPS = COMPARE_OPS + LIKE_OPS + LIST_OPS + NULL_OPS
_ALL_OPS = "=, !=, <, <=, >, >=, LIKE, ILIKE, NOT LIKE, NOT ILIKE, IN, NOT IN, IS NULL, IS NOT NULL"
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ASC", "DESC"})
_MAX_EXACT_INT = 2**53

_NUM = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
_TOKEN_RE = re.compile(
    rf"(?P<num>{_NUM})|(?P<word>[^\W0-9][\w.\-/]*)|(?P<op><=|>=|<>|!=|==|=|<|>)|(?P<punct>[(),-])"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_LIKE_RE = re.compile(r"\\(.)|([%_])|(.)", re.DOTALL)
_BARE_KEY_RE = re.compile(r"[\w.\-/]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Comparison:
    """``kind`` is metric, param, tag or attribute; ``value`` is a str, int, float, a tuple of
    them (IN, NOT IN) or None (IS NULL, IS NOT NULL)."""

    kind: str
    key: str
    op: str
    value: object = None


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


def param_number(value: str) -> float | None:
    """A param's value as a number, or None: what numeric param comparisons use. It is the same
    reading the SQL store keeps in ``params.value_num`` (:func:`tracker.validation.as_number`)."""
    return as_number(value)


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters only: the case folding of ILIKE."""
    return text.translate(_ASCII_LOWER)


def like_parts(pattern: str) -> list[tuple[bool, str]]:
    """Split a LIKE pattern into ``(is_wildcard, char)``; a backslash makes the next character
    literal, and a trailing backslash is itself literal."""
    return [(bool(wild), esc or wild or c) for esc, wild, c in _LIKE_RE.findall(pattern)]


# ---------------------------------------------------------------------------------------------
# Tokenizer and parser


@dataclass(frozen=True)
class _Tok:
    kind: str  # num word op ( ) , - str dq bq end
    text: str
    pos: int
    value: str = ""

    @property
    def end(self) -> int:
        return self.pos + len(self.text)

    def describe(self) -> str:
        return "end of input" if self.kind == "end" else repr(self.text)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Inside quotes, a doubled quote, backslash-quote and backslash-backslash escape; any other
    backslash is kept (so ``'100\\%'`` is the LIKE pattern for a literal ``100%``)."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        pair = text[i : i + 2]
        if pair in (quote * 2, "\\" + quote, "\\\\"):
            out.append(pair[1])
            i += 2
        elif text[i] == quote:
            return "".join(out), i + 1
        else:
            out.append(text[i])
            i += 1
    what = "quoted key" if quote == "`" else "string"
    raise InvalidQueryError(f"unterminated {what}: no closing {quote}", text, start)


def _tokenize(text: str) -> list[_Tok]:
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "'\"`":
            value, end = _read_quoted(text, i)
            tokens.append(_Tok({"'": "str", '"': "dq", "`": "bq"}[c], text[i:end], i, value))
            i = end
        else:
            m = _TOKEN_RE.match(text, i)
            if m is None:
                raise InvalidQueryError(f"unexpected character {c!r}", text, i)
            kind = m.lastgroup or ""
            if kind == "num" and _BARE_KEY_RE.match(text[m.end() : m.end() + 1]):
                shown = _BARE_KEY_RE.match(text, i + 1)
                shown_text = text[i : shown.end()] if shown else m.group()
                raise InvalidQueryError(f"invalid number {shown_text!r}", text, i)
            tokens.append(_Tok(m.group() if kind == "punct" else kind, m.group(), i))
            i = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


_Values = list[tuple[object, _Tok]]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _tokenize(text), 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, message: str, pos: int) -> InvalidQueryError:
        return InvalidQueryError(message, self.text, pos)

    @staticmethod
    def is_word(tok: _Tok, *words: str) -> bool:
        return tok.kind == "word" and tok.text.upper() in words

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.is_word(self.peek(), "OR"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.term()]
        while self.is_word(self.peek(), "AND"):
            self.next()
            items.append(self.term())
        return items[0] if len(items) == 1 else And(tuple(items))

    def term(self) -> Expr:
        tok = self.peek()
        if tok.kind == "(":
            self.next()
            inner = self.or_expr()
            close = self.next()
            if close.kind != ")":
                msg = f"expected ')' to close the '(' at position {tok.pos}, found"
                raise self.fail(f"{msg} {close.describe()}", close.pos)
            return inner
        return self.clause()

    def field(self, what: str) -> tuple[str, str, str]:
        """Parse ``[type.]key``; return (kind, canonical key, source text)."""
        tok = self.next()
        if tok.kind in ("bq", "dq"):
            return "attribute", self.attribute(tok.value, tok.pos), tok.text
        if tok.kind != "word" or tok.text.upper() in _KEYWORDS:
            raise self.fail(f"expected {what}, found {tok.describe()}", tok.pos)
        if "." not in tok.text:
            return "attribute", self.attribute(tok.text, tok.pos), tok.text
        prefix, key = tok.text.split(".", 1)
        kind = _TYPES.get(prefix.lower())
        if kind is None:
            valid = "metrics, params, tags, attributes (or metric, param, tag, attr, run)"
            msg = f"unknown type {prefix!r} in {tok.text!r}; valid types: {valid}"
            raise self.fail(msg, tok.pos)
        key_pos, text = tok.end, tok.text
        if key:
            key_pos = tok.pos + len(prefix) + 1
        elif self.peek().kind in ("bq", "dq") and self.peek().pos == tok.end:
            quoted = self.next()
            key, text = quoted.value, tok.text + quoted.text
            if not key:
                raise self.fail(f"empty key in {text!r}", quoted.pos)
        else:
            hint = f"e.g. {prefix}.IC or {prefix}.`Rank IC`"
            raise self.fail(f"expected a key right after {tok.text!r}, {hint}", tok.end)
        if kind == "attribute":
            return kind, self.attribute(key, key_pos), text
        return kind, key, text

    def attribute(self, name: str, pos: int) -> str:
        canonical = _ATTR_NAMES.get(name.lower())
        if canonical is None:
            hint = "; use metrics., params. or tags. for other keys"
            msg = f"unknown attribute {name!r}; valid attributes: {', '.join(ATTRIBUTES)}{hint}"
            raise self.fail(msg, pos)
        return canonical

    def operator(self, field_text: str) -> tuple[str, _Tok]:
        tok = self.next()
        if tok.kind == "op":
            return {"==": "=", "<>": "!="}.get(tok.text, tok.text), tok
        word = tok.text.upper() if tok.kind == "word" else ""
        if word in ("LIKE", "ILIKE", "IN"):
            return word, tok
        if word == "NOT" and self.is_word(self.peek(), "LIKE", "ILIKE", "IN"):
            return f"NOT {self.next().text.upper()}", tok
        if word == "IS":
            negated = self.is_word(self.peek(), "NOT") and self.next()
            null = self.next()
            if self.is_word(null, "NULL"):
                return ("IS NOT NULL" if negated else "IS NULL"), tok
            msg = f"expected NULL or NOT NULL after IS, found {null.describe()}"
            raise self.fail(msg, null.pos)
        msg = f"expected a comparison operator after {field_text!r} (one of {_ALL_OPS}), found"
        raise self.fail(f"{msg} {tok.describe()}", tok.pos)

    def scalar(self, op: str) -> tuple[object, _Tok]:
        tok = self.next()
        if tok.kind in ("str", "dq"):
            return tok.value, tok
        if tok.kind == "num":
            return self.number(tok), tok
        msg = f"expected a value after {op} (a quoted string or a number), found {tok.describe()}"
        raise self.fail(msg, tok.pos)

    def number(self, tok: _Tok) -> int | float:
        if _INT_RE.fullmatch(tok.text) and abs(int(tok.text)) <= _MAX_EXACT_INT:
            return int(tok.text)  # larger integers become floats, which every backend compares
        value = float(tok.text)
        if not math.isfinite(value):
            raise self.fail(f"number out of range: {tok.text}", tok.pos)
        return value

    def clause(self) -> Comparison:
        kind, key, text = self.field("a filter clause such as metrics.IC > 0.05")
        op, op_tok = self.operator(text)
        values: _Values = []
        if op in LIST_OPS:
            open_tok = self.next()
            if open_tok.kind != "(":
                numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
                example = "(1, 2)" if numeric else "('a', 'b')"
                msg = f"{op} needs a list in parentheses, e.g. {text} {op} {example}; found"
                raise self.fail(f"{msg} {open_tok.describe()}", open_tok.pos)
            if self.peek().kind == ")":
                raise self.fail(f"empty {op} list", self.peek().pos)
            while True:
                values.append(self.scalar(op))
                sep = self.next()
                if sep.kind == ")":
                    break
                if sep.kind != ",":
                    msg = f"expected ',' or ')' in the {op} list, found {sep.describe()}"
                    raise self.fail(msg, sep.pos)
        elif op not in NULL_OPS:
            values.append(self.scalar(op))
        value = tuple(v for v, _ in values) if op in LIST_OPS else values[0][0] if values else None
        comparison = Comparison(kind, key, op, value)
        self.check(comparison, op_tok, values, text)
        return comparison

    def check(self, c: Comparison, op_tok: _Tok, values: _Values, text: str) -> None:
        """Raise if the operator or a value's type does not fit the field."""
        kind, key, op = c.kind, c.key, c.op
        numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
        valid = (
            _PARAM_OPS if kind == "param" else _NUMERIC_KIND_OPS if numeric else _STRING_KIND_OPS
        )
        subject = f"attribute {key!r}" if kind == "attribute" else _PLURAL[kind]
        if op not in valid:
            msg = f"{op} is not valid for {subject}; valid operators: {', '.join(valid)}"
            raise self.fail(msg, op_tok.pos)
        want_str = not numeric and op not in ("<", "<=", ">", ">=")
        if kind == "param" and values and op in ("=", "!=", *LIST_OPS):
            want_str = isinstance(values[0][0], str)  # the first value decides, the rest follow
            mixed = [tok for value, tok in values if isinstance(value, str) != want_str]
            if mixed:
                raise self.fail(f"the {op} list mixes strings and numbers", mixed[0].pos)
        for value, tok in values:
            if isinstance(value, str) == want_str:
                continue
            if want_str and op in LIKE_OPS:
                msg = f"{op} needs a quoted pattern, e.g. {text} {op} '{tok.text}%'"
            elif want_str:
                verb = "compares" if kind == "attribute" else "compare"
                shown = f"('{tok.text}')" if op in LIST_OPS else f"'{tok.text}'"
                msg = f"{subject} {verb} with strings: use {text} {op} {shown}, not {tok.text}"
            else:
                example = tok.value if _NUM_RE.fullmatch(tok.value) else "0.05"
                if kind == "attribute":
                    example = example if example != "0.05" else "1700000000000"
                    subject = f"{key} compares with numbers (epoch milliseconds)"
                else:
                    subject += " compare with " + ("numbers" if numeric else f"{op} as numbers")
                shown = f"({example})" if op in LIST_OPS else example
                msg = f"{subject}: use {text} {op} {shown}, not {tok.text}"
            raise self.fail(msg, tok.pos)


def parse_filter(text: str | None) -> Expr | None:
    """Parse a filter string; None for an empty one. Raises :class:`InvalidQueryError`."""
    if text is None or not text.strip():
        return None
    parser = _Parser(text)
    expr = parser.or_expr()
    tok = parser.peek()
    if tok.kind == ")":
        raise parser.fail("unexpected ')'", tok.pos)
    if tok.kind != "end":
        raise parser.fail(f"expected AND, OR or the end, found {tok.describe()}", tok.pos)
    return expr


def parse_order_by(items: Sequence[str] | str | None) -> list[OrderKey]:
    """Parse ``["metrics.IC DESC", "-params.lr", ...]`` (or one comma-separated string)."""
    if items is None:
        return []
    keys: list[OrderKey] = []
    for item in [items] if isinstance(items, str) else items:
        parser = _Parser(item)
        while item.strip():
            minus = parser.next() if parser.peek().kind == "-" else None
            start = parser.peek().pos
            kind, key, text = parser.field("an order-by key such as metrics.IC DESC")
            descending = minus is not None
            if parser.is_word(parser.peek(), "ASC", "DESC"):
                direction = parser.next()
                if minus is not None:
                    raise parser.fail("use a leading '-' or ASC/DESC, not both", minus.pos)
                descending = direction.text.upper() == "DESC"
            if any(k.kind == kind and k.key == key for k in keys):
                raise parser.fail(f"duplicate order-by key {text!r}", start)
            keys.append(OrderKey(kind, key, not descending))
            sep = parser.next()
            if sep.kind == "end":
                break
            if sep.kind != ",":
                msg = f"expected ASC, DESC or the end after {text!r}, found {sep.describe()}"
                raise parser.fail(msg, sep.pos)
    return keys


# ---------------------------------------------------------------------------------------------
# Formatting


def _quote(text: str, quote: str) -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, quote + quote) + quote


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return _quote(value, "'")
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return repr(value)


def format_field(kind: str, key: str) -> str:
    prefix = _PLURAL[kind]
    return f"{prefix}.{key}" if _BARE_KEY_RE.fullmatch(key) else f"{prefix}.{_quote(key, '`')}"


def format_filter(expr: Expr | None) -> str:
    """Canonical text of an expression; ``parse_filter`` turns it back into an equal one."""
    if expr is None:
        return ""
    if isinstance(expr, Comparison):
        text = f"{format_field(expr.kind, expr.key)} {expr.op}"
        return text if expr.op in NULL_OPS else f"{text} {_format_value(expr.value)}"
    nested = (And, Or) if isinstance(expr, And) else Or
    parts = [
        f"({format_filter(e)})" if isinstance(e, nested) else format_filter(e) for e in expr.items
    ]
    return (" AND " if isinstance(expr, And) else " OR ").join(parts)


# ---------------------------------------------------------------------------------------------
# Python interpreter

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


def _like_regex(pattern: str) -> re.Pattern[str]:
    body = "".join(
        (".*" if c == "%" else ".") if wild else re.escape(c) for wild, c in like_parts(pattern)
    )
    return re.compile(body, re.DOTALL)


def _value_test(op: str, value: Any) -> Callable[[Any], bool]:
    if op in _COMPARE:
        compare = _COMPARE[op]
        return lambda v: compare(v, value)
    if op in LIST_OPS:
        members, wanted = frozenset(value), op == "IN"
        return lambda v: (v in members) == wanted
    fold = ascii_fold if "ILIKE" in op else str
    regex, wanted = _like_regex(fold(value)), not op.startswith("NOT")
    return lambda v: (regex.fullmatch(fold(v)) is not None) == wanted


def _comparison_predicate(c: Comparison) -> Callable[[RunView], bool]:
    kind, key = c.kind, c.key
    if c.op in NULL_OPS:
        want_missing = c.op == "IS NULL"
        return lambda run: (_lookup(run, kind, key) is _MISSING) == want_missing
    test = _value_test(c.op, c.value)
    sample = c.value[0] if isinstance(c.value, tuple) else c.value
    numeric_param = kind == "param" and not isinstance(sample, str)
    as_text = kind == "attribute" and key not in NUMERIC_ATTRIBUTES

    def predicate(run: RunView) -> bool:
        value = _lookup(run, kind, key)
        if value is _MISSING:
            return False
        if kind == "metric":
            value = math.nan if value is None else float(value)
            if math.isnan(value):
                return False
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
