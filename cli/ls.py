"""``tracker ls``: the experiments, or one experiment's runs with its most telling columns."""

from __future__ import annotations

import difflib
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import click

from tracker.cli.context import Context
from tracker.cli.describe import duration_ms, iso, run_record, status_label
from tracker.cli.output import (
    emit_json,
    emit_table,
    fmt_duration,
    fmt_value,
    is_terminal,
    output_options,
)
from tracker.entities import ExperimentInfo, ExperimentSummary, Run, RunData, ViewType
from tracker.errors import ExperimentNotFound
from tracker.manager import ExpReader
from tracker.stale import now_ms

#: Attribute columns ``--columns`` knows; the first five are the default.
ATTRIBUTES = ("id", "name", "status", "start", "duration", "run_id", "end", "heartbeat", "host",
              "pid", "lifecycle", "experiment")  # fmt: skip
DEFAULT_ATTRIBUTES = ATTRIBUTES[:5]
SKIP_PARAMS = frozenset({"cmd-sys.argv"})  # the command line: long, and shown by `show`
MAX_AUTO_METRICS, MAX_AUTO_PARAMS = 4, 3
MAX_AUTO_PARAM_WIDTH = 20  # longer values (paths, configs) would crowd out everything else
STATUS_ORDER = ("running", "stale", "scheduled", "finished", "failed", "killed")
TABLE_PAGE = 50  # runs in the table without --limit; machine-readable output has them all
MAX_LISTED_KEYS = 10  # known keys named in a warning
KINDS = {"metric": "metrics", "param": "params", "tag": "tags"}  # order-by kind -> RunData


def _csv_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.argument("experiment", required=False)
@click.option(
    "--filter",
    "filter_string",
    metavar="EXPR",
    help="Only runs matching EXPR, e.g. \"metrics.IC > 0.05 and params.model = 'lgb'\".",
)
@click.option(
    "--sort",
    "sort",
    metavar="FIELD",
    multiple=True,
    help="Order by FIELD ('-metrics.IC' or 'metrics.IC DESC'); repeatable. Default: newest first.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    help=f"At most this many runs (0: all). Default: all with --json/--csv/--md; the first "
    f"{TABLE_PAGE} in the table, which then says how many more there are.",
)
@click.option(
    "--columns",
    metavar="LIST",
    help="Exactly these columns, comma-separated: "
    + ", ".join(ATTRIBUTES)
    + ", metrics.KEY, params.KEY, tags.KEY.",
)
@click.option(
    "--params",
    "params",
    metavar="LIST",
    help="These param columns (comma-separated; '*' for all) instead of the "
    "automatic choice of params that vary.",
)
@click.option(
    "--metrics",
    "metrics",
    metavar="LIST",
    help="These metric columns (comma-separated; '*' for all) instead of the "
    "automatic choice of the most common ones.",
)
@click.option("--all", "show_all", is_flag=True, help="Include deleted runs and experiments.")
@output_options("json", "csv", "md")
@click.pass_obj
def ls(
    obj: Context,
    experiment: str | None,
    filter_string: str | None,
    sort: tuple[str, ...],
    limit: int | None,
    columns: str | None,
    params: str | None,
    metrics: str | None,
    show_all: bool,
    fmt: str,
) -> None:
    """List experiments, or the runs of EXPERIMENT (newest first).

    Without EXPERIMENT: each experiment with its run counts by status and last activity.
    With it: short id, name, status (RUNNING runs without a recent heartbeat show as
    'stale'), start, duration, and the metrics and params most worth a column.
    """
    view = ViewType.ALL if show_all else ViewType.ACTIVE_ONLY
    if experiment is None:
        if filter_string or sort or columns or params or metrics:
            raise click.UsageError("--filter, --sort and column options need an EXPERIMENT")
        _list_experiments(obj.reader, view, fmt)
        return
    reader = obj.reader
    exp = _experiment(reader, experiment)
    cols = _csv_list(columns) or list(DEFAULT_ATTRIBUTES)
    _check_columns(cols)
    page = TABLE_PAGE if limit is None and fmt == "table" else limit or None
    # All matching ids (cheap: no params or metrics), so that a cut page can say what it left.
    infos = reader.search_run_infos(
        [exp.experiment_id], filter_string or "", list(sort) or None, view=view
    )
    total = len(infos)
    infos = infos[:page]
    data = reader.get_runs_data([i.run_id for i in infos])
    runs = [Run(i, data.get(i.run_id, RunData())) for i in infos]
    _warn_unknown_keys(reader, exp, view, runs, _named_keys(sort, cols, metrics, params))
    now = now_ms()
    if fmt == "json":
        emit_json([run_record(r.info, r.data, exp.name, now) for r in runs])
    else:
        if show_all and columns is None and any(r.info.lifecycle.value == "deleted" for r in runs):
            cols.append("lifecycle")
        _emit_runs(runs, cols, columns is None, metrics, params, exp.name, now, fmt)
    if len(runs) < total:
        _say_cut(len(runs), total, bool(sort), limit is None)


def _emit_runs(
    runs: Sequence[Run],
    cols: list[str],
    auto: bool,
    metrics: str | None,
    params: str | None,
    exp: str,
    now: int,
    fmt: str,
) -> None:
    """The table (or CSV, Markdown): ``cols`` plus the chosen metric and param columns."""
    picked_m = _pick("metrics", runs, _csv_list(metrics), auto and metrics is None)
    picked_p = _pick("params", runs, _csv_list(params), auto and params is None)
    # Only columns chosen here may be dropped to fit the width, never ones the user named.
    optional = (picked_m if metrics is None else []) + (picked_p if params is None else [])
    cols += picked_m + picked_p
    if optional:
        cols = _fit(cols, optional, runs, now, exp)
    rows = [[_cell(c, r, now, exp, fmt) for c in cols] for r in runs]
    headers = cols if fmt == "csv" else _headers(cols)
    emit_table(headers, rows, fmt, styles={"id": "cyan", "status": "bold"})
    if fmt == "table" and not runs:
        click.echo("(no runs)", err=True)


def _say_cut(shown: int, total: int, sorted_: bool, paged: bool) -> None:
    """On stderr, so that a cut is never silent and stdout stays what was asked for."""
    which = "first" if sorted_ else "newest"
    how = "--limit 0 shows all" + (", as do --json, --csv and --md" if paged else "")
    click.echo(
        f"(showing the {which} {shown} of {total} runs, {total - shown} more; {how})", err=True
    )


def _named_keys(
    sort: tuple[str, ...], cols: list[str], metrics: str | None, params: str | None
) -> list[tuple[str, str, str]]:
    """``(option, kind, key)`` for every metric, param or tag the user named."""
    from tracker.search import parse_order_by

    named = [
        ("--sort", KINDS[k.kind], k.key) for k in parse_order_by(list(sort)) if k.kind in KINDS
    ]
    for col in cols:
        if "." in col:
            kind, key = col.split(".", 1)
            named.append(("--columns", kind, key))
    for option, kind, chosen in (("--metrics", "metrics", metrics), ("--params", "params", params)):
        keys = _csv_list(chosen) or []
        named += [(option, kind, k) for k in keys if keys != ["*"]]
    return named


def _warn_unknown_keys(
    reader: ExpReader,
    exp: ExperimentInfo,
    view: ViewType,
    runs: Sequence[Run],
    named: list[tuple[str, str, str]],
) -> None:
    """Warn about each named key that no run of the experiment has (a typo would otherwise
    sort nothing and show an empty column), listing the keys the shown runs have."""
    if not runs:
        return
    for option, kind, key in dict.fromkeys(named):
        present = {k for r in runs for k in getattr(r.data, kind)}
        if key in present or _anywhere(reader, exp, view, kind, key):
            continue
        known = sorted(present)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(known[:MAX_LISTED_KEYS]) or "none"
        if len(known) > MAX_LISTED_KEYS:
            listed += f", … ({len(known) - MAX_LISTED_KEYS} more)"
        click.echo(
            f"warning: {option}: no run of {exp.name!r} has the {kind[:-1]} {key!r}{hint} "
            f"(the {kind} of the runs shown: {listed})",
            err=True,
        )


def _anywhere(reader: ExpReader, exp: ExperimentInfo, view: ViewType, kind: str, key: str) -> bool:
    """Whether a run not shown has the key (the page shows only some runs)."""
    if "`" in key:
        return True  # the filter grammar cannot quote it: do not warn about what may exist
    found = reader.search_run_infos(
        [exp.experiment_id], f"{kind}.`{key}` IS NOT NULL", max_results=1, view=view
    )
    return bool(found)


def _experiment(reader: ExpReader, name: str) -> ExperimentInfo:
    """By name; a number that names no experiment is tried as an id."""
    found = reader.find_experiment(name)
    if found is not None:
        return found
    if name.isdigit():
        try:
            return reader.get_experiment(name)
        except ExperimentNotFound:
            pass
    return reader.get_experiment_by_name(name)  # raises, listing the existing names


#: What a research run is judged by (Qlib's record metrics), shown first when present.
HEADLINE = ("IC", "Rank IC", "ICIR", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
            "1day.excess_return_with_cost.information_ratio")  # fmt: skip


def _pick(kind: str, runs: Sequence[Run], chosen: list[str] | None, auto: bool) -> list[str]:
    """Candidate ``metrics.KEY`` / ``params.KEY`` columns, most useful first.

    Metrics: those most runs logged. Params: those that vary across the listed runs (a
    constant one says nothing about the difference between rows), most common first."""
    values: dict[str, list[Any]] = {}
    for run in runs:
        for key, value in getattr(run.data, kind).items():
            values.setdefault(key, []).append(value)
    if chosen is not None:
        keys = sorted(values) if chosen == ["*"] else chosen
        return [f"{kind}.{k}" for k in keys]
    if not auto:
        return []
    if kind == "metrics":
        # The most common first; among equally common ones the workflow's headline metrics,
        # then those that differ between runs.
        def rank(k: str) -> tuple[int, int, bool, str]:
            headline = HEADLINE.index(k) if k in HEADLINE else len(HEADLINE)
            return -len(values[k]), headline, len(set(values[k])) == 1 and len(runs) > 1, k

        ranked = sorted(values, key=rank)[:MAX_AUTO_METRICS]
        return [f"metrics.{k}" for k in ranked]
    candidates = [
        k
        for k, vs in values.items()
        if k not in SKIP_PARAMS and max(len(str(v)) for v in vs) <= MAX_AUTO_PARAM_WIDTH
    ]
    varying = [k for k in candidates if len(set(values[k])) > 1 or len(values[k]) < len(runs)]
    if len(runs) > 1 and varying:
        candidates = varying
    ranked = sorted(candidates, key=lambda k: (-len(values[k]), k))[:MAX_AUTO_PARAMS]
    return [f"params.{k}" for k in ranked]


def _fit(
    cols: list[str], optional: list[str], runs: Sequence[Run], now: int, exp: str
) -> list[str]:
    """Drop ``optional`` columns until the table fits the terminal (80 columns when not a
    terminal, so that piped output reads the same in a narrow window). Metrics and params take
    turns, so the best of each stays; at least one metric is kept."""
    width = shutil.get_terminal_size((80, 24)).columns if is_terminal() else 80
    ms = [c for c in optional if c.startswith("metrics.")]
    ps = [c for c in optional if c.startswith("params.")]
    turns = [
        c for pair in zip(ms + [""] * len(ps), ps + [""] * len(ms), strict=True) for c in pair if c
    ]
    headers = dict(zip(cols, _headers(cols), strict=True))

    def col_width(c: str) -> int:
        return 2 + max([len(headers[c]), *(len(str(_cell(c, r, now, exp, "table"))) for r in runs)])

    used = sum(col_width(c) for c in cols if c not in optional)
    kept: set[str] = set()
    for c in turns:
        if used + col_width(c) <= width or (not kept and c.startswith("metrics.")):
            kept.add(c)
            used += col_width(c)
    return [c for c in cols if c not in optional or c in kept]


def _check_columns(cols: list[str]) -> None:
    for col in cols:
        kind = col.split(".", 1)[0] if "." in col else None
        if col not in ATTRIBUTES and kind not in ("metrics", "params", "tags"):
            raise click.UsageError(
                f"unknown column {col!r}; use {', '.join(ATTRIBUTES)}, metrics.KEY, params.KEY "
                "or tags.KEY"
            )


def _headers(cols: list[str]) -> list[str]:
    """Bare keys (``IC``, ``lr``) unless a key is both a metric and a param (or a tag)."""
    keys = Counter(c.split(".", 1)[1] for c in cols if "." in c)
    return [c.split(".", 1)[1] if "." in c and keys[c.split(".", 1)[1]] == 1 else c for c in cols]


def _cell(col: str, run: Run, now: int, exp: str, fmt: str) -> Any:
    info = run.info
    if "." in col:
        kind, key = col.split(".", 1)
        value = getattr(run.data, kind).get(key)
        if isinstance(value, float) and fmt != "csv":
            return f"{value:.4g}" if fmt == "table" else fmt_value(value)
        return repr(value) if isinstance(value, float) else value
    if col in ("start", "end", "heartbeat"):
        ms = {"start": info.start_time, "end": info.end_time, "heartbeat": info.heartbeat}[col]
        return iso(ms) if fmt == "csv" else _when(ms, now)
    if col == "duration" and fmt == "csv":
        took = duration_ms(info, now)
        return None if took is None else took / 1000  # seconds, a number for spreadsheets
    simple: dict[str, Any] = {
        "id": info.run_id[:8],
        "run_id": info.run_id,
        "name": info.name,
        "status": status_label(info, now),
        "duration": fmt_duration(duration_ms(info, now)),
        "host": info.host,
        "pid": info.pid,
        "lifecycle": info.lifecycle.value,
        "experiment": exp,
    }
    return simple[col]


def _when(ms: int | None, now: int) -> str:
    """Local time to the minute; the year only when it is not this year's."""
    if ms is None:
        return ""
    t = time.localtime(ms / 1000)
    pattern = "%m-%d %H:%M" if t.tm_year == time.localtime(now / 1000).tm_year else "%Y-%m-%d %H:%M"
    return time.strftime(pattern, t)


def _list_experiments(reader: ExpReader, view: ViewType, fmt: str) -> None:
    summaries = reader.summarize_experiments(view)
    stale = _stale_counts(reader, view, any(s.statuses.get("RUNNING") for s in summaries))
    rows = []
    for s in summaries:
        counts = {k.lower(): v for k, v in s.statuses.items()}
        gone = stale.get(s.info.experiment_id, 0)
        if gone:
            counts["running"] -= gone
            counts["stale"] = gone
        counts = {k: v for k, v in counts.items() if v}
        ordered = sorted(counts.items(), key=lambda kv: STATUS_ORDER.index(kv[0]))
        rows.append((s, counts, ", ".join(f"{n} {k}" for k, n in ordered)))
    if fmt == "json":
        emit_json([_experiment_record(s, counts) for s, counts, _ in rows])
        return
    now = now_ms()
    columns = ["id", "experiment", "runs", "status", "last activity"]
    table = [
        [s.info.experiment_id, s.info.name, s.runs, text, _when(s.last_activity, now)]
        for s, _, text in rows
    ]
    if view is ViewType.ALL:
        columns.append("lifecycle")
        for row, (s, _, _) in zip(table, rows, strict=True):
            row.append(s.info.lifecycle.value)
    emit_table(columns, table, fmt, styles={"experiment": "cyan"})
    if fmt == "table" and not rows:
        click.echo("(no experiments)", err=True)


def _experiment_record(s: ExperimentSummary, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "experiment_id": s.info.experiment_id,
        "name": s.info.name,
        "lifecycle": s.info.lifecycle.value,
        "runs": s.runs,
        "statuses": counts,  # lower case, with "stale" split from "running"
        "last_activity": s.last_activity,
        "last_activity_iso": iso(s.last_activity),
        "creation_time": s.info.creation_time,
    }


def _stale_counts(reader: ExpReader, view: ViewType, any_running: bool) -> dict[str, int]:
    """Stale runs per experiment, asked only when something is RUNNING."""
    return reader.count_stale_runs(view) if any_running else {}
