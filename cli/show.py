"""``tracker show RUN``: one run in full, or one metric's history."""

from __future__ import annotations

from typing import Any

import click

from tracker.cli.context import Context
from tracker.cli.describe import (
    CODE_FILES,
    COMMIT_TAG,
    DIRTY_TAG,
    code_summary,
    duration_ms,
    experiment_name,
    fmt_age,
    run_record,
    status_label,
)
from tracker.cli.output import (
    emit_json,
    emit_table,
    fmt_bytes,
    fmt_duration,
    fmt_time,
    fmt_value,
    is_terminal,
    output_options,
)
from tracker.cli.spark import sparkline
from tracker.entities import ArtifactEntry, Metric, RunData, RunInfo
from tracker.manager import ExpReader
from tracker.stale import now_ms


def _header(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    styled = is_terminal()
    for key, value in rows:
        label = key.ljust(width)
        click.echo(f"{click.style(label, bold=True) if styled else label}  {value}")


def _history_row(key: str, latest: float, history: list[Metric]) -> list[Any]:
    values = [m.value for m in history]
    several = len(values) > 1
    return [
        key,
        latest,
        min(values) if several else None,
        max(values) if several else None,
        len(values),
        sparkline(values),
    ]


@click.command()
@click.argument("run")
@click.option(
    "--metric",
    "metric_key",
    metavar="KEY",
    help="Print the full history (step, value, timestamp) of this metric instead.",
)
@output_options("json", "csv")
@click.pass_obj
def show(obj: Context, run: str, metric_key: str | None, fmt: str) -> None:
    """Show RUN: status, times, params, metrics with their history, tags, artifacts, code.

    RUN is a run id, a unique id prefix, or EXPERIMENT/RUN_NAME (the newest of that name).
    """
    reader = obj.reader
    info = obj.run(run)
    data = reader.get_runs_data([info.run_id]).get(info.run_id, RunData())
    if metric_key is not None:
        _show_metric(reader, info, data, metric_key, fmt)
        return
    if fmt == "csv":
        raise click.UsageError("--csv prints one metric's history: add --metric KEY")
    now = now_ms()
    exp = experiment_name(reader, info.experiment_id)
    artifacts = reader.list_artifact_entries(info.run_id)
    histories = {k: reader.get_metric_history(info.run_id, k) for k in sorted(data.metrics)}
    if fmt == "json":
        record = run_record(info, data, exp, now)
        record["metric_history"] = {
            k: [{"step": m.step, "value": m.value, "timestamp": m.timestamp} for m in h]
            for k, h in histories.items()
        }
        record["artifacts"] = [vars(a) for a in artifacts]
        record["code"] = {
            "commit": data.tags.get(COMMIT_TAG),
            "dirty": data.tags.get(DIRTY_TAG) == "true" if DIRTY_TAG in data.tags else None,
            "recorded": [a.path for a in artifacts if a.path in CODE_FILES],
        }
        emit_json(record)
        return
    _show_table(info, data, exp, artifacts, histories, now)


def _show_table(
    info: RunInfo,
    data: RunData,
    exp: str,
    artifacts: list[ArtifactEntry],
    histories: dict[str, list[Metric]],
    now: int,
) -> None:
    status = status_label(info, now)
    if info.lifecycle.value == "deleted":
        status += " (deleted: `tracker restore` brings it back)"
    rows = [
        ("run", info.run_id),
        ("name", info.name),
        ("experiment", f"{exp} (id {info.experiment_id})"),
        ("status", status),
        ("start", fmt_time(info.start_time) or "-"),
    ]
    took = fmt_duration(duration_ms(info, now))
    if info.end_time is not None:
        rows.append(("end", f"{fmt_time(info.end_time)} (took {took})"))
    elif took:
        rows.append(("running for", took))
    if info.pid is not None or info.host:
        rows.append(("process", f"pid {info.pid} on {info.host or '?'}"))
    if info.heartbeat is not None:
        rows.append(("heartbeat", f"{fmt_age(now - info.heartbeat)} ago"))
    rows.append(("code", code_summary(data, artifacts)))
    _header(rows)
    if data.params:
        click.echo()
        emit_table(["param", "value"], sorted(data.params.items()))
    if histories:
        click.echo()
        emit_table(
            ["metric", "latest", "min", "max", "steps", "history"],
            [_history_row(k, data.metrics[k], h) for k, h in histories.items()],
            styles={"history": "green"},
        )
    tags = sorted((k, v) for k, v in data.tags.items() if k not in (COMMIT_TAG, DIRTY_TAG))
    if tags:
        click.echo()
        emit_table(["tag", "value"], tags)
    if artifacts:
        click.echo()
        total = fmt_bytes(sum(a.size for a in artifacts))
        emit_table(
            [f"artifact ({len(artifacts)}, {total})", "size", "sha256"],
            [(a.path, fmt_bytes(a.size), a.checksum.split(":", 1)[-1][:12]) for a in artifacts],
        )


def _show_metric(reader: ExpReader, info: RunInfo, data: RunData, key: str, fmt: str) -> None:
    if key not in data.metrics:
        have = ", ".join(sorted(data.metrics)) or "none"
        raise click.ClickException(
            f"run {info.run_id[:8]} has no metric {key!r}; its metrics: {have}"
        )
    history = reader.get_metric_history(info.run_id, key)
    if fmt == "json":
        emit_json([{"step": m.step, "value": m.value, "timestamp": m.timestamp} for m in history])
    elif fmt == "csv":
        # Full precision for scripts: repr() round-trips a float, 6 significant digits do not.
        rows = [(m.step, repr(m.value), m.timestamp) for m in history]
        emit_table(["step", "value", "timestamp"], rows, "csv")
    else:
        rows = [(m.step, fmt_value(m.value), fmt_time(m.timestamp)) for m in history]
        emit_table(["step", key, "time"], rows)
