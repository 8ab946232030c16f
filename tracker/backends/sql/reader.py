"""A read-only view of a native SQLite store through the stdlib ``sqlite3`` driver.

The CLI reads through this: SQLAlchemy and SQLModel take about 0.3 s to import, more than
``tracker ls`` may spend in all. Filters and orders on metrics, params or tags are evaluated
in Python by :mod:`tracker.search`'s interpreter, which agrees with the SQL one by test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.backends.sql import SCHEMA_VERSION
from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    ExperimentSummary,
    Lifecycle,
    Metric,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import (
    ConfigError,
    ExperimentNotFound,
    RunNotFound,
    SchemaVersionError,
    StoreError,
)
from tracker.manager import ExpReader
from tracker.stale import stale_cutoff

if TYPE_CHECKING:
    from tracker.search import Expr, OrderKey

_RUN_COLUMNS = (
    "runs.id, runs.experiment_id, runs.name, runs.status, runs.lifecycle, runs.start_time, "
    "runs.end_time, runs.heartbeat, runs.pid, runs.host"
)
_CHUNK = 500


class SQLiteReader(ExpReader):
    """Reads a store written by :class:`~tracker.backends.sql.store.SQLExpManager`; it has no
    write methods."""

    def __init__(
        self,
        uri: str,
        default_exp_name: str = "Experiment",
        artifact_uri: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(uri, default_exp_name, artifact_uri, storage_options)
        path = self.path = Path(uri.split(":///", 1)[1])
        if not path.is_file():
            raise ConfigError(f"no tracker store at {path}")
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        try:
            row = self.conn.execute("SELECT version FROM tracker_schema").fetchone()
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{path} is not a tracker store: {e}{_damage_hint(e, path)}") from e
        if row is None or row[0] != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store {uri!r} has schema v{row and row[0]}, this tracker reads "
                f"v{SCHEMA_VERSION}: run `tracker db upgrade` or upgrade tracker"
            )

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:  # a damaged page surfaces only when it is read
            raise StoreError(f"{self.path}: database error: {e}{_damage_hint(e, self.path)}") from e

    # ------------------------------------------------------------------------------ experiments

    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        rows = self._rows(
            "SELECT id, name, lifecycle, creation_time FROM experiments WHERE id = ?",
            (_int(experiment_id),),
        )
        if not rows:
            raise ExperimentNotFound(f"no experiment with id {experiment_id!r}")
        return _exp(rows[0])

    def find_experiment(self, name: str) -> ExperimentInfo | None:
        rows = self._rows(
            "SELECT id, name, lifecycle, creation_time FROM experiments "
            "WHERE name = ? AND lifecycle = 'active'",
            (name,),
        )
        return _exp(rows[0]) if rows else None

    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        stages = view.stages()
        rows = self._rows(
            "SELECT id, name, lifecycle, creation_time FROM experiments "
            f"WHERE lifecycle IN ({_marks(stages)}) ORDER BY id",
            stages,
        )
        return [_exp(r) for r in rows]

    def summarize_experiments(
        self, view: ViewType = ViewType.ACTIVE_ONLY
    ) -> list[ExperimentSummary]:
        stages = view.stages()
        counts: dict[int, dict[str, int]] = {}
        last: dict[int, int] = {}
        for exp_id, status, n, latest in self._rows(
            "SELECT experiment_id, status, count(*), "
            "max(max(coalesce(start_time, 0), coalesce(end_time, 0), coalesce(heartbeat, 0))) "
            f"FROM runs WHERE lifecycle IN ({_marks(stages)}) GROUP BY experiment_id, status",
            stages,
        ):
            counts.setdefault(exp_id, {})[status] = n
            last[exp_id] = max(last.get(exp_id, 0), latest or 0)
        return [
            ExperimentSummary(
                info,
                sum(counts.get(int(info.experiment_id), {}).values()),
                counts.get(int(info.experiment_id), {}),
                last.get(int(info.experiment_id)) or None,
            )
            for info in self.list_experiment_infos(view)
        ]

    def count_stale_runs(self, view: ViewType = ViewType.ACTIVE_ONLY) -> dict[str, int]:
        """One indexed query: the rule of :func:`tracker.stale.is_stale` in SQL."""
        stages = view.stages()
        rows = self._rows(
            "SELECT experiment_id, count(*) FROM runs WHERE status = 'RUNNING' "
            "AND coalesce(heartbeat, start_time, 0) < ? "
            f"AND lifecycle IN ({_marks(stages)}) GROUP BY experiment_id",
            (stale_cutoff(), *stages),
        )
        return {str(e): n for e, n in rows}

    # ------------------------------------------------------------------------------------- runs

    def get_run_info(self, run_id: str) -> RunInfo:
        rows = self._rows(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"no run with id {run_id!r}")
        return _run(rows[0])

    def find_runs(self, prefix: str, view: ViewType = ViewType.ALL) -> list[RunInfo]:
        prefix = prefix.lower()
        if not prefix or not all(c in "0123456789abcdef" for c in prefix):
            return []
        stages = view.stages()
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id >= ? AND id < ? "
            f"AND lifecycle IN ({_marks(stages)}) ORDER BY start_time DESC LIMIT 50",
            (prefix, prefix + "g", *stages),
        )
        return [_run(r) for r in rows]

    def _runs(
        self,
        experiment_ids: Sequence[str] | None,
        view: ViewType,
        limit: int | None,
        by: OrderKey | None = None,
    ) -> list[RunInfo]:
        """Runs newest first, or ordered by one metric, param or tag in SQL (``tracker ls
        --sort``): values first, then NaN, then runs without the key, as ``sort_runs``."""
        stages = view.stages()
        args: list[Any] = []
        source, rank = "runs", ""
        if by is not None:
            table = {"metric": "latest_metrics", "param": "params", "tag": "tags"}[by.kind]
            source = f'runs LEFT JOIN {table} o ON o.run_pk = runs.pk AND o."key" = ?'
            args.append(by.key)
            direction = "ASC" if by.ascending else "DESC"
            rank = (
                "CASE WHEN o.run_pk IS NULL THEN 2 WHEN o.value IS NULL THEN 1 ELSE 0 END, "
                f"o.value {direction}, "
            )
        where = [f"runs.lifecycle IN ({_marks(stages)})"]
        args += stages
        if experiment_ids is not None:
            ids = [i for i in (_int(e) for e in experiment_ids) if i is not None]
            where.append(f"runs.experiment_id IN ({_marks(ids)})")
            args += ids
        sql = f"SELECT {_RUN_COLUMNS} FROM {source} WHERE {' AND '.join(where)} "
        sql += f"ORDER BY {rank}runs.start_time DESC, runs.id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_run(r) for r in self._rows(sql, args)]

    def _list_run_infos(
        self, experiment_ids: Sequence[str] | None, view: ViewType
    ) -> list[RunInfo]:
        return self._runs(experiment_ids, view, None)

    def _search_run_infos(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[RunInfo]:
        """Unfiltered runs, newest first or by one metric, param or tag, in SQL; the rest in
        Python by the default."""
        if expr is None and not order:
            return self._runs(experiment_ids, view, max_results)
        if expr is None and len(order) == 1 and order[0].kind != "attribute":
            return self._runs(experiment_ids, view, max_results, order[0])
        return super()._search_run_infos(experiment_ids, expr, order, max_results, view)

    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        out: dict[str, RunData] = {}
        for chunk in _chunks(list(run_ids)):
            found = self._rows(f"SELECT id FROM runs WHERE id IN ({_marks(chunk)})", chunk)
            data = {run_id: RunData() for (run_id,) in found}
            for table, attr in (
                ("params", "params"),
                ("latest_metrics", "metrics"),
                ("tags", "tags"),
            ):
                # Joined on the public id in the same statement: each statement is its own
                # snapshot, and a run purged meanwhile gives its row key to the next run.
                for run_id, key, value in self._rows(
                    f'SELECT r.id, t."key", t.value FROM {table} t JOIN runs r ON r.pk = t.run_pk '
                    f"WHERE r.id IN ({_marks(chunk)})",
                    chunk,
                ):
                    if attr == "metrics" and value is None:
                        value = float("nan")
                    run = data.get(run_id) or data.setdefault(run_id, RunData())
                    getattr(run, attr)[key] = value
            out.update(data)
        return out

    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        rows = self._rows(
            'SELECT m."key", m.value, m.step, m.timestamp FROM metrics m JOIN runs r '
            'ON r.pk = m.run_pk WHERE r.id = ? AND m."key" = ? ORDER BY m.step, m.timestamp, m.id',
            (run_id, key),
        )
        if not rows:
            self.get_run_info(run_id)  # RunNotFound for an unknown run
        return [Metric(k, float("nan") if v is None else v, s, t) for k, v, s, t in rows]

    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        rows = self._rows(
            "SELECT a.path, a.size, a.checksum, a.mtime FROM artifacts a JOIN runs r "
            "ON r.pk = a.run_pk WHERE r.id = ? ORDER BY a.path",
            (run_id,),
        )
        if not rows:
            self.get_run_info(run_id)  # RunNotFound for an unknown run
        return [ArtifactEntry(*r) for r in rows]


def _damage_hint(error: sqlite3.DatabaseError, path: Path) -> str:
    if "malformed" not in str(error):
        return ""
    return (
        f"; the file is damaged: check it with `sqlite3 {path} 'PRAGMA integrity_check'` and "
        "restore it from a backup (or `sqlite3 … .recover`)"
    )


def _marks(items: Iterable[Any]) -> str:
    return ", ".join("?" for _ in items) or "NULL"


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _exp(row: Any) -> ExperimentInfo:
    return ExperimentInfo(str(row[0]), row[1], Lifecycle(row[2]), row[3])


def _run(row: Any) -> RunInfo:
    return RunInfo(
        run_id=row[0],
        experiment_id=str(row[1]),
        name=row[2],
        status=RunStatus(row[3]),
        lifecycle=Lifecycle(row[4]),
        start_time=row[5],
        end_time=row[6],
        heartbeat=row[7],
        pid=row[8],
        host=row[9],
    )
