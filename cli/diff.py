"""``tracker diff RUN_A RUN_B …``: what changed between runs, compared with the first one."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import click

from tracker.cli.context import Context
from tracker.cli.describe import (
    COMMIT_TAG,
    DIRTY_TAG,
    duration_ms,
    experiment_name,
    run_record,
    status_label,
)
from tracker.cli.output import (
    emit_json,
    emit_table,
    fmt_bytes,
    fmt_duration,
    is_terminal,
    output_options,
)
from tracker.entities import ArtifactEntry, Run, RunData
from tracker.errors import ArtifactNotFound
from tracker.manager import ExpManager
from tracker.stale import now_ms

MISSING = "-"
PATCH_FILES = ("code_diff.txt", "code_cached.txt")  # unstaged, staged changes


@click.command()
@click.argument("runs", nargs=-1, metavar="RUN_A RUN_B [RUN_C ...]")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also list params, tags and artifacts that are the same.",
)
@click.option(
    "--code",
    is_flag=True,
    help="Also print a unified diff of the uncommitted changes recorded with each run "
    "(code_diff.txt, code_cached.txt).",
)
@output_options("json", "md")
@click.pass_obj
def diff(obj: Context, runs: tuple[str, ...], show_all: bool, code: bool, fmt: str) -> None:
    """Compare runs with the first: params and tags that differ, metrics side by side with
    the absolute and relative change, artifacts added, removed or changed (by checksum), and
    the code they ran.

    Each RUN is a run id, a unique id prefix, or EXPERIMENT/RUN_NAME; the runs may come from
    different experiments.
    """
    if len(runs) < 2:
        raise click.UsageError("give at least two runs to compare")
    reader = obj.reader
    infos = [obj.run(ref) for ref in runs]
    data = reader.get_runs_data([i.run_id for i in infos])
    rs = [Run(i, data.get(i.run_id, RunData())) for i in infos]
    exps = {i.experiment_id: experiment_name(reader, i.experiment_id) for i in infos}
    arts = [{a.path: a for a in reader.list_artifact_entries(i.run_id)} for i in infos]
    patches = (
        {f: [_patch(reader, r, a, f) for r, a in zip(rs, arts, strict=True)] for f in PATCH_FILES}
        if code
        else {}
    )
    now = now_ms()
    if fmt == "json":
        emit_json(_as_json(rs, exps, arts, patches, show_all, now))
        return
    ids = [r.info.run_id[:8] for r in rs]
    sections = [_runs_section(rs, exps, arts, ids, now)]
    sections.append(_kv_section("param", [r.data.params for r in rs], ids, show_all))
    sections.append(_metrics_section(rs, ids))
    tags = [_user_tags(r.data) for r in rs]
    sections.append(_kv_section("tag", tags, ids, show_all))
    sections.append(_artifacts_section(arts, ids, show_all))
    for n, (title, columns, rows) in enumerate(sections):
        _emit(title, columns, rows, fmt, gap=n > 0)
    for name, texts in patches.items():
        for i in range(1, len(rs)):
            _emit_patch(name, ids[0], ids[i], texts[0], texts[i], fmt)


def _user_tags(data: RunData) -> dict[str, str]:
    """Tags without the git ones, which the runs section shows."""
    return {k: v for k, v in data.tags.items() if k not in (COMMIT_TAG, DIRTY_TAG)}


def _emit(title: str, columns: list[str], rows: list[list[Any]], fmt: str, gap: bool) -> None:
    if fmt == "md":
        click.echo(f"### {title}\n")
        if rows:
            emit_table(columns, rows, "md")
            click.echo()
        return
    if gap:
        click.echo()
    if not rows:
        click.echo(title)
        return
    emit_table(columns, rows, fmt, title=title)


def _runs_section(
    rs: list[Run],
    exps: dict[str, str],
    arts: list[dict[str, ArtifactEntry]],
    ids: list[str],
    now: int,
) -> tuple[str, list[str], list[list[Any]]]:
    commits = [r.data.tags.get(COMMIT_TAG) for r in rs]
    rows = [
        ["name", *(r.info.name for r in rs)],
        ["experiment", *(exps[r.info.experiment_id] for r in rs)],
        ["status", *(status_label(r.info, now) for r in rs)],
        ["duration", *(fmt_duration(duration_ms(r.info, now)) for r in rs)],
        ["commit", *(c[:12] if c else MISSING for c in commits)],
        ["uncommitted", *(_dirty(r.data, a) for r, a in zip(rs, arts, strict=True))],
    ]
    same = len(set(commits)) == 1
    title = "runs" + (
        "" if commits[0] is None else " (same commit)" if same else " (commits differ)"
    )
    return title, ["run", *ids], rows


def _dirty(data: RunData, arts: dict[str, ArtifactEntry]) -> str:
    recorded = [f"{p} {fmt_bytes(arts[p].size)}" for p in PATCH_FILES if p in arts and arts[p].size]
    if recorded:
        return ", ".join(recorded)
    dirty = data.tags.get(DIRTY_TAG)
    return {"true": "yes (not recorded)", "false": "none"}.get(dirty or "", MISSING)


def _kv_section(
    kind: str, maps: list[dict[str, str]], ids: list[str], show_all: bool
) -> tuple[str, list[str], list[list[Any]]]:
    keys = sorted(set().union(*maps))
    differ = [k for k in keys if len({m.get(k) for m in maps}) > 1]
    shown = keys if show_all else differ
    rows = [[k, *(m.get(k, MISSING) for m in maps)] for k in shown]
    title = f"{kind}s: {len(differ)} of {len(keys)} differ" if keys else f"{kind}s: none"
    if not show_all and len(differ) < len(keys):
        title += " (--all shows all)"
    return title, [kind, *ids], rows


def change(base: float | None, value: float | None) -> tuple[float | None, float | None]:
    """Absolute and relative change of ``value`` against ``base`` (relative: None when the
    base is 0 or not finite, where a percentage means nothing)."""
    if base is None or value is None:
        return None, None
    delta = value - base
    if not math.isfinite(delta):
        return (None if math.isnan(delta) else delta), None
    rel = delta / abs(base) if base and math.isfinite(base) else None
    return delta, rel


def _fmt_change(delta: float | None, rel: float | None) -> str:
    if delta is None:
        return ""
    if delta == 0:
        return "0"
    text = f"{delta:+.4g}"
    return text if rel is None else f"{text} ({rel:+.1%})"


def _metrics_section(rs: list[Run], ids: list[str]) -> tuple[str, list[str], list[list[Any]]]:
    keys = sorted(set().union(*(r.data.metrics for r in rs)))
    columns = ["metric", ids[0]]
    for i in ids[1:]:
        columns += [i, "change" if len(ids) == 2 else f"vs {ids[0][:4]}"]
    rows = []
    for key in keys:
        values = [r.data.metrics.get(key) for r in rs]
        row: list[Any] = [key, _num(values[0])]
        for v in values[1:]:
            row += [_num(v), _fmt_change(*change(values[0], v))]
        rows.append(row)
    return f"metrics: {len(keys)}", columns, rows


def _num(value: float | None) -> str:
    return MISSING if value is None else f"{value:.6g}"


def artifact_status(a: ArtifactEntry | None, b: ArtifactEntry | None) -> str:
    if a is None:
        return "added" if b is not None else ""
    if b is None:
        return "removed"
    same = a.checksum == b.checksum if a.checksum and b.checksum else a.size == b.size
    return "same" if same else "changed"


def _artifacts_section(
    arts: list[dict[str, ArtifactEntry]], ids: list[str], show_all: bool
) -> tuple[str, list[str], list[list[Any]]]:
    paths = sorted(set().union(*arts))
    counts: dict[str, int] = {}
    rows = []
    for path in paths:
        first = arts[0].get(path)
        cells = [fmt_bytes(first.size) if first else MISSING]
        states = []
        for other in arts[1:]:
            b = other.get(path)
            state = artifact_status(first, b)
            states.append(state)
            counts[state] = counts.get(state, 0) + 1
            cells.append(
                f"{state} {fmt_bytes(b.size)}" if b and state != "same" else state or MISSING
            )
        if show_all or any(s != "same" for s in states):
            rows.append([path, *cells])
    summary = ", ".join(
        f"{counts[s]} {s}" for s in ("changed", "added", "removed") if counts.get(s)
    )
    return f"artifacts: {summary or 'all the same'} (of {len(paths)})", ["artifact", *ids], rows


def _patch(reader: ExpManager, run: Run, arts: dict[str, ArtifactEntry], name: str) -> str | None:
    """The recorded patch text, or None when the run has none (read only with --code: it is
    the one thing here that touches the artifact store)."""
    if name not in arts:
        return None
    try:
        raw = reader.artifacts.get_bytes(run.info.artifact_prefix, name)
    except ArtifactNotFound:
        return None
    return raw.decode("utf-8", errors="replace")


def unified(name: str, a_id: str, b_id: str, a: str | None, b: str | None) -> str:
    """The message or unified diff between two recorded patches ("" when there is nothing
    worth a line: no staged changes in either run is the usual case)."""
    if name != PATCH_FILES[0] and not (a or b):
        return ""
    if a is None and b is None:
        return f"{name}: not recorded for {a_id} or {b_id}"
    if a is None or b is None:
        missing = a_id if a is None else b_id
        return f"{name}: not recorded for {missing}"
    if a == b:
        return f"{name}: identical ({'empty' if not a else f'{len(a.splitlines())} lines'})"
    lines = difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), f"{a_id}/{name}", f"{b_id}/{name}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


def _emit_patch(name: str, a_id: str, b_id: str, a: str | None, b: str | None, fmt: str) -> None:
    text = unified(name, a_id, b_id, a, b)
    if not text:
        return
    is_diff = text.startswith("---")
    if fmt == "md":
        click.echo(f"```diff\n{text}\n```\n" if is_diff else f"{text}\n")
        return
    click.echo()
    if not is_diff or not is_terminal():
        click.echo(text)
        return
    colours = {"+": "green", "-": "red", "@": "cyan"}
    for line in text.splitlines():
        bold = line.startswith(("+++", "---"))
        click.echo(click.style(line, fg=None if bold else colours.get(line[:1]), bold=bold))


def _as_json(
    rs: list[Run],
    exps: dict[str, str],
    arts: list[dict[str, ArtifactEntry]],
    patches: dict[str, list[str | None]],
    show_all: bool,
    now: int,
) -> dict[str, Any]:
    def differing(maps: Sequence[dict[str, str]]) -> dict[str, list[str | None]]:
        keys = sorted(set().union(*maps))
        return {
            k: [m.get(k) for m in maps]
            for k in keys
            if show_all or len({m.get(k) for m in maps}) > 1
        }

    metrics = {}
    for key in sorted(set().union(*(r.data.metrics for r in rs))):
        values = [r.data.metrics.get(key) for r in rs]
        changes = [change(values[0], v) for v in values]
        metrics[key] = {
            "values": values,
            "change": [c[0] for c in changes],
            "relative": [c[1] for c in changes],
        }
    artifacts = {}
    for path in sorted(set().union(*arts)):
        entries = [a.get(path) for a in arts]
        states = [artifact_status(entries[0], e) for e in entries[1:]]
        if show_all or any(s != "same" for s in states):
            artifacts[path] = {
                "entries": [vars(e) if e else None for e in entries],
                "status": [None, *states],
            }
    ids = [r.info.run_id for r in rs]
    out: dict[str, Any] = {
        "runs": [run_record(r.info, r.data, exps[r.info.experiment_id], now) for r in rs],
        "params": differing([r.data.params for r in rs]),
        "metrics": metrics,
        "tags": differing([_user_tags(r.data) for r in rs]),
        "artifacts": artifacts,
        "code": {
            "commits": [r.data.tags.get(COMMIT_TAG) for r in rs],
            "dirty": [_bool_tag(r.data.tags.get(DIRTY_TAG)) for r in rs],
        },
    }
    if patches:
        out["code"]["patches"] = {
            name: [
                {
                    "from": ids[0],
                    "to": ids[i],
                    "recorded": [texts[0] is not None, texts[i] is not None],
                    "diff": unified(name, ids[0][:8], ids[i][:8], texts[0], texts[i]),
                }
                for i in range(1, len(rs))
            ]
            for name, texts in patches.items()
        }
    return out


def _bool_tag(value: str | None) -> bool | None:
    return None if value is None else value == "true"
