"""How runs are described, shared by ``show``, ``ls`` and ``diff``: status with staleness,
durations and ages, the ``--json`` record, the recorded code state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tracker.cli.output import fmt_bytes
from tracker.entities import ArtifactEntry, RunData, RunInfo, RunStatus
from tracker.manager import ExpReader
from tracker.stale import run_is_stale, stale_cutoff

CODE_FILES = ("code_diff.txt", "code_cached.txt", "code_status.txt")
COMMIT_TAG, DIRTY_TAG = "tracker.git_commit", "tracker.git_dirty"


def is_stale(info: RunInfo, now: int) -> bool:
    """:func:`tracker.stale.is_stale` at ``now`` (epoch ms)."""
    return run_is_stale(info, stale_cutoff(now=now))


def status_label(info: RunInfo, now: int) -> str:
    return "stale" if is_stale(info, now) else info.status.value.lower()


def duration_ms(info: RunInfo, now: int) -> int | None:
    """Ended: end - start. Running: so far; a stale run stopped at its last heartbeat."""
    if info.start_time is None:
        return None
    if info.end_time is not None:
        end = info.end_time
    elif info.status is RunStatus.RUNNING:
        end = (info.heartbeat or info.start_time) if is_stale(info, now) else now
    else:
        return None
    return max(0, end - info.start_time)


def fmt_age(ms: int) -> str:
    """A coarse age ("12s", "5m", "3h", "2d"): precise enough to judge liveness."""
    s = max(0, ms) // 1000
    for unit, size, limit in (("s", 1, 90), ("m", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if s < limit:
            return f"{s // size}{unit}"
    return f"{s // 86400}d"


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def run_record(info: RunInfo, data: RunData, experiment: str | None, now: int) -> dict[str, Any]:
    """Everything ``--json`` says about a run: full id, times in epoch ms and ISO 8601 (UTC)."""
    return {
        "run_id": info.run_id,
        "name": info.name,
        "experiment_id": info.experiment_id,
        "experiment": experiment,
        "status": info.status.value,
        "stale": is_stale(info, now),
        "lifecycle": info.lifecycle.value,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "heartbeat": info.heartbeat,
        "start_time_iso": iso(info.start_time),
        "end_time_iso": iso(info.end_time),
        "heartbeat_iso": iso(info.heartbeat),
        "duration_ms": duration_ms(info, now),
        "pid": info.pid,
        "host": info.host,
        "artifact_prefix": info.artifact_prefix,
        "params": data.params,
        "metrics": data.metrics,
        "tags": data.tags,
    }


def experiment_name(reader: ExpReader, experiment_id: str) -> str:
    return reader.get_experiment(experiment_id).name


def code_summary(data: RunData, artifacts: list[ArtifactEntry]) -> str:
    """One line: the commit and whether uncommitted changes were recorded (and where)."""
    commit = data.tags.get(COMMIT_TAG)
    sizes = {a.path: a.size for a in artifacts if a.path in CODE_FILES}
    if commit is None and not sizes:
        return "not recorded (not started in a git work tree)"
    head = f"commit {commit[:12]}" if commit else "no commit"
    changed = [f"{p} {fmt_bytes(sizes[p])}" for p in CODE_FILES[:2] if sizes.get(p)]
    if changed:
        return f"{head}, uncommitted changes: {', '.join(changed)}"
    if data.tags.get(DIRTY_TAG) == "true":
        return f"{head}, uncommitted changes (patch not recorded)"
    return f"{head}, clean working tree"
