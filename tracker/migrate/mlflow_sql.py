"""Reading an MLflow tracking database (SQLite or PostgreSQL) with plain SQL.

Only the tables every MLflow version since 1.x has are read: ``experiments``, ``runs``,
``params``, ``tags`` and ``metrics`` (the full history; ``latest_metrics`` is derived).
MLflow stores a NaN metric as value 0 with ``is_nan = 1`` and clamps ±inf to ±1.797e308
(the largest double); both are turned back, so a value of exactly ±1.7976931348623157e308
reads as ±inf. Nothing here imports mlflow, and the database is never written to.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from tracker.entities import Lifecycle, Metric, RunStatus
from tracker.migrate import SOURCE_ID_TAG, MigrationError, RunContent, SourceRun
from tracker.uri import mask

_MAX = sys.float_info.max  # what MLflow writes for inf


def sql_value(value: float | None, is_nan: Any) -> float:
    """A metric value as MLflow meant it (see the module docstring)."""
    if is_nan or value is None:
        return math.nan
    if value >= _MAX:
        return math.inf
    if value <= -_MAX:
        return -math.inf
    return float(value)


def engine_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: MLflow's ``postgresql://`` means psycopg2,
    tracker installs psycopg 3; a SQLite file is opened read-only and must exist."""
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:" or not os.path.isfile(path):
            raise MigrationError(f"{mask(url)!r}: no such SQLite file")
        return f"sqlite:///file:{os.path.abspath(path)}?mode=ro&uri=true"
    scheme, rest = url.split(":", 1)
    if scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg2") is None:
        return f"postgresql+psycopg:{rest}"
    return url


class MLflowDatabase:
    """An MLflow tracking database, read-only."""

    def __init__(self, url: str) -> None:
        self.location = url
        try:
            self.engine: Engine = create_engine(engine_url(url))
            tables = set(inspect(self.engine).get_table_names())
        except (SQLAlchemyError, ImportError) as e:
            raise MigrationError(
                f"cannot open the MLflow database {mask(url)!r}: {mask(str(e))}"
            ) from e
        need = {"experiments", "runs", "params", "tags", "metrics"}
        cols = {t: {c["name"] for c in inspect(self.engine).get_columns(t)} for t in need & tables}
        missing = sorted(need - tables) + [
            f"{t}.{c}"
            for t, c in (("experiments", "experiment_id"), ("runs", "run_uuid"))
            if t in cols and c not in cols[t]
        ]
        if missing:
            self.engine.dispose()
            raise MigrationError(
                f"{mask(url)!r} is not an MLflow tracking database: it has no {', '.join(missing)}"
            )
        # Old schemas (MLflow < 1.2) have no step / is_nan columns.
        self._metric_cols = cols["metrics"]

    def close(self) -> None:
        self.engine.dispose()

    def _rows(self, query: str, **params: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(text(query), params))
        except SQLAlchemyError as e:
            raise MigrationError(f"{self.location}: {e}") from e

    def experiment_names(self) -> list[str]:
        return [r.name for r in self._rows("SELECT name FROM experiments ORDER BY experiment_id")]

    def runs(self) -> Iterator[SourceRun]:
        """Every run, deleted ones included, experiment by experiment, oldest first."""
        exps = {
            str(r.experiment_id): (r.name, r.lifecycle_stage == Lifecycle.DELETED.value)
            for r in self._rows("SELECT experiment_id, name, lifecycle_stage FROM experiments")
        }
        names, sources = (
            dict(self._rows("SELECT run_uuid, value FROM tags WHERE key = :k", k=key))
            for key in ("mlflow.runName", SOURCE_ID_TAG)
        )
        rows = self._rows(
            "SELECT run_uuid, experiment_id, name, status, start_time, end_time, "
            "lifecycle_stage, artifact_uri FROM runs "
            "ORDER BY experiment_id, start_time, run_uuid"
        )
        for row in rows:
            exp_name, exp_deleted = exps.get(str(row.experiment_id), (None, False))
            if exp_name is None:
                raise MigrationError(f"run {row.run_uuid} names no experiment in {self.location}")
            try:
                status = RunStatus(row.status or RunStatus.RUNNING.value)
                stage = Lifecycle(row.lifecycle_stage or Lifecycle.ACTIVE.value)
            except ValueError as e:
                raise MigrationError(f"run {row.run_uuid} in {self.location}: {e}") from e
            yield SourceRun(
                run_id=row.run_uuid,
                experiment=exp_name,
                name=row.name or names.get(row.run_uuid) or row.run_uuid,
                status=status,
                # MLflow marks an experiment's runs deleted with it; older versions did not.
                lifecycle=Lifecycle.DELETED if exp_deleted else stage,
                start_time=row.start_time,
                end_time=row.end_time,
                load=functools.partial(self._content, row.run_uuid),
                artifact_uris=(row.artifact_uri,) if row.artifact_uri else (),
                experiment_deleted=exp_deleted,
                source_id=sources.get(row.run_uuid),
            )

    def _content(self, run_id: str) -> RunContent:
        step = "step" if "step" in self._metric_cols else "0"
        is_nan = "is_nan" if "is_nan" in self._metric_cols else "0"
        metrics = [
            Metric(r.key, sql_value(r.value, r.is_nan), int(r.step), int(r.timestamp))
            for r in self._rows(
                f"SELECT key, value, timestamp, {step} AS step, {is_nan} AS is_nan "
                "FROM metrics WHERE run_uuid = :r "
                # MLflow's own history order (get_metric_history).
                f"ORDER BY key, {step}, timestamp, value, {is_nan}",
                r=run_id,
            )
        ]
        params = self._rows("SELECT key, value FROM params WHERE run_uuid = :r", r=run_id)
        tags = self._rows("SELECT key, value FROM tags WHERE run_uuid = :r", r=run_id)
        return RunContent(
            params={r.key: r.value for r in params},
            tags={r.key: "" if r.value is None else r.value for r in tags},
            metrics=metrics,
        )
