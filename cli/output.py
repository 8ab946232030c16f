"""Rendering of tables and records: an aligned table (rich, in colour, on a terminal; plain
text otherwise, never truncated), or ``--json``, ``--csv``, ``--md`` for scripts and notes."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json", "csv", "md")


def output_options(*formats: str) -> Callable[[F], F]:
    """Add ``--json`` / ``--csv`` / ``--md`` flags (those named) that set ``fmt``."""

    def decorate(fn: F) -> F:
        for name in reversed(formats):
            fn = click.option(
                f"--{name}",
                "fmt",
                flag_value=name,
                help={"json": "Print JSON.", "csv": "Print CSV.", "md": "Print a Markdown table."}[
                    name
                ],
            )(fn)
        return click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(fn)

    return decorate


def is_terminal() -> bool:
    return sys.stdout.isatty()


def fmt_value(value: Any) -> str:
    """How a cell shows a value: floats to 6 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def fmt_time(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def fmt_duration(ms: int | None) -> str:
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings, as MLflow's REST API does."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    click.echo(json.dumps(_clean(data), indent=2, ensure_ascii=False, default=str))


def emit_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    *,
    title: str | None = None,
    styles: dict[str, str] | None = None,
) -> None:
    """Print rows in the chosen format; ``styles`` maps a column to a rich style on a terminal."""
    cells = [[fmt_value(v) for v in row] for row in rows]
    if fmt == "json":
        emit_json([dict(zip(columns, row, strict=True)) for row in rows])
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        click.echo(buf.getvalue(), nl=False)
    elif fmt == "md":
        click.echo(markdown(columns, cells))
    elif is_terminal():
        _rich_table(columns, cells, title, styles or {})
    else:
        if title:
            click.echo(title)
        click.echo(plain(columns, cells))


def plain(columns: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def markdown(columns: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in columns) + " |"]
    lines.append("|" + "|".join(" --- " for _ in columns) + "|")
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in cells]
    return "\n".join(lines)


def _rich_table(
    columns: Sequence[str],
    cells: Sequence[Sequence[str]],
    title: str | None,
    styles: dict[str, str],
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    for column in columns:
        table.add_column(column, style=styles.get(column), overflow="fold")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # plain text: names may hold "[...]"
    Console().print(table)
