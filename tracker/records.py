"""Runs as a pandas DataFrame, the shape of MLflow's ``search_runs`` (pandas is imported here
only, so the CLI and plain logging never pay for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from tracker.entities import Run, ViewType

if TYPE_CHECKING:
    from tracker.manager import ExpReader

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


def search_records(
    manager: ExpReader,
    experiment_ids: Sequence[str] | str | None = None,
    filter_string: str = "",
    order_by: Sequence[str] | str | None = None,
    max_results: int | None = 100_000,
    experiment_names: Sequence[str] | None = None,
    run_view_type: int = ViewType.ACTIVE_ONLY,
) -> pd.DataFrame:
    """Runs as a DataFrame with MLflow's ``search_runs`` columns: run_id, experiment_id,
    name, status, start_time, end_time, then ``metrics.*``, ``params.*``, ``tags.*``."""
    ids = [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids
    if experiment_names:
        named = [manager.get_experiment_by_name(n).experiment_id for n in experiment_names]
        ids = list(ids or []) + named
    return runs_frame(
        manager.search_runs(ids, filter_string, order_by, max_results, ViewType(run_view_type))
    )
