"""Filter and order-by text into :mod:`tracker.search.grammar` nodes, with errors that point at
the offending character."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tracker.errors import InvalidQueryError
from tracker.search.grammar import (
    ALL_OPS,
    ATTR_NAMES,
    ATTRIBUTES,
    BARE_KEY_RE,
    KEYWORDS,
    LIKE_OPS,
    LIST_OPS,
    MAX_CLAUSES,
    MAX_DEPTH,
    MAX_EXACT_INT,
    NULL_OPS,
    NUMERIC_ATTRIBUTES,
    NUMERIC_KIND_OPS,
    PARAM_OPS,
    PLURAL,
    QUOTED_RE,
    RUN_NAME_TAG,
    STRING_KIND_OPS,
    TYPES,
    And,
    Comparison,
    Expr,
    Or,
    OrderKey,
)

_NUM = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
_TOKEN_RE = re.compile(
    rf"(?P<num>{_NUM})|(?P<word>[^\W0-9][\w.\-/]*)|(?P<op><=|>=|<>|!=|==|=|<|>)|(?P<punct>[(),-])"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_ESCAPE_STRING_RE = re.compile(r"[eE]'((?:''|\\.|[^'\\])*)'", re.DOTALL)
_UNESCAPE_RE = re.compile(r"''|\\(.)", re.DOTALL)


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
    m = QUOTED_RE[quote_char].match(text, start)
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
            if kind == "num" and BARE_KEY_RE.match(text[m.end() : m.end() + 1]):
                shown = BARE_KEY_RE.match(text, i + 1)
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
        if tok.kind != "word" or tok.text.upper() in KEYWORDS:
            raise self.fail(f"expected {what}, found {tok.describe()}", tok.pos)
        if "." not in tok.text:
            return "attribute", self.attribute(tok.text, tok.pos), tok.text
        prefix, key = tok.text.split(".", 1)
        kind = TYPES.get(prefix.lower())
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
        canonical = ATTR_NAMES.get(name.lower())
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
        msg = f"expected a comparison operator after {field_text!r} (one of {ALL_OPS}), found"
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
        if _INT_RE.fullmatch(tok.text) and abs(int(tok.text)) <= MAX_EXACT_INT:
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
        valid = PARAM_OPS if kind == "param" else NUMERIC_KIND_OPS if numeric else STRING_KIND_OPS
        subject = f"attribute {key!r}" if kind == "attribute" else PLURAL[kind]
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
