"""Expressions back into filter text, and quoting a value or key so that it reads back as itself."""

from __future__ import annotations

from tracker.search.grammar import (
    BARE_KEY_RE,
    NULL_OPS,
    PLURAL,
    QUOTED_RE,
    And,
    Comparison,
    Expr,
    Or,
)

KEY_QUOTES = '`"'


def quote(text: str, quotes: str = "'\"") -> str:
    """``text`` as a string (``quotes=KEY_QUOTES`` for a key) that reads back as ``text``:
    in the first of ``quotes`` that can hold it, else as an escape string ``E'...'``."""
    for q in quotes:
        # A backslash before the closing quote would pair with it and continue the string.
        if QUOTED_RE[q].fullmatch(q + text + q) and not (q != "`" and text.endswith("\\")):
            return q + text + q
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return repr(value)


def format_field(kind: str, key: str) -> str:
    prefix = PLURAL[kind]
    return f"{prefix}.{key if BARE_KEY_RE.fullmatch(key) else quote(key, KEY_QUOTES)}"


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
