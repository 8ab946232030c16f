"""The run filter and order-by language, shared by every backend.

On every filter MLflow's ``search_runs`` accepts, it returns what MLflow returns on its SQLite
store (a differential test checks this against the real ``mlflow`` package); it adds ``OR``,
parentheses, ``IN`` for every field, numeric param comparisons, ``ESCAPE`` and escape strings.
Grammar::

    filter   := or_expr | <empty>
    or_expr  := and_expr (OR and_expr)*              AND binds tighter than OR
    and_expr := term (AND term)*
    term     := '(' or_expr ')' | clause
    clause   := field op value [ESCAPE string] | field IS [NOT] NULL
    field    := [type '.'] key                       no type means an attribute
    type     := metrics | metric | params | param | parameters | parameter
              | tags | tag | attributes | attribute | attr | run
    key      := bare key (letters, digits, _ . - /), or `quoted`, "quoted" or E'escaped'
    op       := = | == | != | <> | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE | [NOT] IN
    value    := string | number | '(' value (',' value)* ')'
    string   := 'text' | "text" | E'text'

Keywords, types and attribute names are case-insensitive; metric, param and tag keys are not. The
first dot ends the type: ``metrics.1day.excess_return.mean`` is the metric
``1day.excess_return.mean``. ``tags.mlflow.runName`` is the run name (MLflow keeps the name in
that tag). Numbers are decimal literals (``-1``, ``.5``, ``1e-3``); integers beyond 2**53 are
read as floats.

Quoting is MLflow's (that is, sqlparse's): the text between the quotes is taken as it is, nothing
is unescaped. A doubled quote or a backslash before a quote does not end the string but stays in
it: ``'it''s'`` is the five characters ``it''s``; write ``"it's"`` for ``it's``. For text no plain
quoting can hold, an escape string ``E'...'`` (PostgreSQL's) reads ``\\x`` as ``x`` and ``''`` as
``'``: ``E'it\'s "x"'``. MLflow does not accept escape strings.

What each type accepts:

- ``metrics``: ``= != < <= > >= IN NOT IN`` with numbers (``metrics.IC > 0.05``, never
  ``'0.05'``); ``IS NULL`` / ``IS NOT NULL`` test whether the run logged the metric. A NaN value
  is logged; as in MLflow (and IEEE 754) it satisfies only ``!=`` and ``NOT IN``.
- ``params``: with strings ``= != LIKE ILIKE IN`` (and the ``NOT`` forms); with unquoted
  numbers ``= != < <= > >= IN NOT IN`` compare numerically, and only params whose value reads as a
  number (:func:`param_number`) can match: ``params.lr <= 0.01``. An IN list is all strings or all
  numbers. ``IS [NOT] NULL`` tests whether the run has the param.
- ``tags``: like params, strings only.
- attributes ``run_id`` (``id``), ``run_name`` (``name``, ``"run name"``), ``status``,
  ``experiment_id``, ``lifecycle`` (``lifecycle_stage``) are strings, like tags; ``start_time``
  (``created``), ``end_time`` and ``heartbeat`` are numbers (epoch milliseconds) and may be NULL.
- ``status`` ignores case (``status = 'finished'``), and ``'stale'`` names a RUNNING run whose
  heartbeat (or, for runs written by other tools, start time) is older than
  ``tracker.stale.DEFAULT_STALE_AFTER``, as ``tracker ls`` shows it: a stale run is both
  ``'running'`` and ``'stale'``, so ``status = 'running'`` includes it and
  ``status != 'stale'`` excludes it.

A comparison on a metric, param, tag or NULL attribute that the run does not have is false, even
for ``!=`` and ``NOT IN``. ``LIKE`` is case-sensitive; ``%`` matches any text and ``_`` one
character, everywhere in the pattern: as in SQL and MLflow on SQLite there is no escape character
unless ``ESCAPE`` names one (``tags.x LIKE '100!%' ESCAPE '!'`` matches ``100%``). ``ILIKE``
also ignores the case of ASCII letters (only those: ``'é'`` does not match ``'É'``).

A filter holds at most :data:`MAX_CLAUSES` comparisons and nests parentheses at most
:data:`MAX_DEPTH` deep.

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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tracker.errors import InvalidQueryError
from tracker.stale import is_stale, stale_cutoff
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
_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "ESCAPE", "ASC", "DESC"}
)
_MAX_EXACT_INT = 2**53
#: Bounds on a filter's size: enough for any filter a person writes, and they keep parsing,
#: planning (PostgreSQL's grows fast with the number of subqueries) and recursion bounded.
MAX_CLAUSES = 256
MAX_DEPTH = 32
RUN_NAME_TAG = "mlflow.runName"  # MLflow's tag holding the run name
STALE = "STALE"  # the status ``tracker ls`` shows for a RUNNING run whose heartbeat is lost

_NUM = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
_TOKEN_RE = re.compile(
    rf"(?P<num>{_NUM})|(?P<word>[^\W0-9][\w.\-/]*)|(?P<op><=|>=|<>|!=|==|=|<|>)|(?P<punct>[(),-])"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")
# sqlparse's string and quoted-name tokens, which MLflow's parser uses: a doubled quote (and, in
# strings, a backslash-quote) does not end the token; the text between the quotes is the value.
_QUOTED_RE = {
    "'": re.compile(r"'(?:''|\\'|[^'])*'"),
    '"': re.compile(r'"(?:""|\\"|[^"])*"'),
    "`": re.compile(r"`(?:``|[^`])*`"),
}
_ESCAPE_STRING_RE = re.compile(r"[eE]'((?:''|\\.|[^'\\])*)'", re.DOTALL)
_UNESCAPE_RE = re.compile(r"''|\\(.)", re.DOTALL)
_BARE_KEY_RE = re.compile(r"[\w.\-/]+")
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


KEY_QUOTES = '`"'


def quote(text: str, quotes: str = "'\"") -> str:
    """``text`` as a string (``quotes=KEY_QUOTES`` for a key) that reads back as ``text``:
    in the first of ``quotes`` that can hold it, else as an escape string ``E'...'``."""
    for q in quotes:
        # A backslash before the closing quote would pair with it and continue the string.
        if _QUOTED_RE[q].fullmatch(q + text + q) and not (q != "`" and text.endswith("\\")):
            return q + text + q
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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


def _quoted(text: str, start: int) -> _Tok:
    quote_char = text[start]
    m = _QUOTED_RE[quote_char].match(text, start)
    if m is None:
        what = "quoted key" if quote_char == "`" else "string"
        raise InvalidQueryError(f"unterminated {what}: no closing {quote_char}", text, start)
    kind = {"'": "str", '"': "dq", "`": "bq"}[quote_char]
    return _Tok(kind, m.group(), start, m.group()[1:-1])


def _escape_string(text: str, start: int) -> _Tok:
    m = _ESCAPE_STRING_RE.match(text, start)
    if m is None:
        raise InvalidQueryError("unterminated escape string: no closing '", text, start)
    value = _UNESCAPE_RE.sub(lambda e: "'" if e.group(1) is None else e.group(1), m.group(1))
    return _Tok("esc", m.group(), start, value)


def _tokenize(text: str) -> list[_Tok]:
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "'\"`":
            tok = _quoted(text, i)
        elif c in "eE" and text.startswith("'", i + 1):
            tok = _escape_string(text, i)
        else:
            m = _TOKEN_RE.match(text, i)
            if m is None:
                raise InvalidQueryError(f"unexpected character {c!r}", text, i)
            kind, word = m.lastgroup or "", m.group()
            if kind == "num" and _BARE_KEY_RE.match(text[m.end() : m.end() + 1]):
                shown = _BARE_KEY_RE.match(text, i + 1)
                shown_text = text[i : shown.end()] if shown else word
                raise InvalidQueryError(f"invalid number {shown_text!r}", text, i)
            if kind == "word" and word[-2:] in (".E", ".e") and text.startswith("'", m.end()):
                word = word[:-1]  # ``tags.E'...'``: a key written as an escape string
            tok = _Tok(word if kind == "punct" else kind, word, i)
        tokens.append(tok)
        i = tok.end
    tokens.append(_Tok("end", "", len(text)))
    return tokens


_Values = list[tuple[object, _Tok]]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _tokenize(text), 0
        self.clauses = self.depth = 0

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
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise InvalidQueryError(
                    f"the filter nests parentheses more than {MAX_DEPTH} deep (at position "
                    f"{tok.pos}); remove redundant ones",
                    self.text,
                )
            inner = self.or_expr()
            close = self.next()
            if close.kind != ")":
                msg = f"expected ')' to close the '(' at position {tok.pos}, found"
                raise self.fail(f"{msg} {close.describe()}", close.pos)
            self.depth -= 1
            return inner
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise InvalidQueryError(
                f"the filter has more than {MAX_CLAUSES} comparisons; narrow it, or use IN "
                "lists (metrics.x IN (1, 2, 3)) where comparisons share a key",
                self.text,
            )
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
        elif self.peek().kind in ("bq", "dq", "esc") and self.peek().pos == tok.end:
            quoted = self.next()
            key, text = quoted.value, tok.text + quoted.text
            if not key:
                raise self.fail(f"empty key in {text!r}", quoted.pos)
        else:
            hint = f"e.g. {prefix}.IC or {prefix}.`Rank IC`"
            raise self.fail(f"expected a key right after {tok.text!r}, {hint}", tok.end)
        if kind == "attribute":
            return kind, self.attribute(key, key_pos), text
        if kind == "tag" and key == RUN_NAME_TAG:
            return "attribute", "run_name", text
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
        if tok.kind in ("str", "dq", "esc"):
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
        if op in LIKE_OPS and self.is_word(self.peek(), "ESCAPE"):
            comparison = replace(comparison, escape=self.escape_char(str(value)))
        return comparison

    def escape_char(self, pattern: str) -> str:
        """Parse ``ESCAPE 'c'`` after a LIKE pattern."""
        keyword, tok = self.next(), self.next()
        if tok.kind not in ("str", "dq", "esc") or len(tok.value) != 1:
            msg = f"ESCAPE takes one character in quotes, e.g. ESCAPE '!'; found {tok.describe()}"
            raise self.fail(msg, tok.pos)
        i = 0
        while i < len(pattern):
            i += 2 if pattern[i] == tok.value else 1
        if i > len(pattern):  # the last character escapes nothing
            msg = f"the LIKE pattern ends with its ESCAPE character {tok.value!r}"
            raise self.fail(msg, keyword.pos)
        return tok.value

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


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return repr(value)


def format_field(kind: str, key: str) -> str:
    prefix = _PLURAL[kind]
    return f"{prefix}.{key if _BARE_KEY_RE.fullmatch(key) else quote(key, KEY_QUOTES)}"


def format_filter(expr: Expr | None) -> str:
    """Canonical text of an expression; ``parse_filter`` turns it back into an equal one."""
    if expr is None:
        return ""
    if isinstance(expr, Comparison):
        text = f"{format_field(expr.kind, expr.key)} {expr.op}"
        if expr.op in NULL_OPS:
            return text
        text += f" {_format_value(expr.value)}"
        return f"{text} ESCAPE {quote(expr.escape)}" if expr.escape else text
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
