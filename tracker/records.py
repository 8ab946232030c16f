"""Runs as a pandas DataFrame, the shape of MLflow's ``search_runs`` (pandas is imported here
only, so the CLI and plain logging never pay for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from tracker.entities import Run

BASE_COLUMNS = ["run_id", "experiment_id", "name", "status", "start_time", "end_time"]


def _ts(ms: int | None) -> Any:
    return pd.NaT if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        i = run.info
        row: dict[str, Any] = {
            "run_id": i.run_id,
            "experiment_id": i.experiment_id,
            "name": i.name,
            "status": i.status.value,
            "start_time": _ts(i.start_time),
            "end_time": _ts(i.end_time),
        }
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    prefixed = sorted(c for c in frame.columns if c not in BASE_COLUMNS)
    groups = ("metrics", "params", "tags")
    order = sorted(prefixed, key=lambda c: groups.index(c.split(".")[0]))
    return frame[BASE_COLUMNS + order]
