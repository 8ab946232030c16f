"""The native :class:`~tracker.manager.ExpManager` over SQLite or PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, exc, func, select, update

from tracker.backends.sql.db import Database, retried
from tracker.backends.sql.models import (
    ArtifactRow,
    ExperimentRow,
    LatestMetricRow,
    MetricRow,
    ParamRow,
    RunRow,
    TagRow,
)
from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    Lifecycle,
    Metric,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import (
    AlreadyExistsError,
    ExperimentNotFound,
    InvalidInputError,
    InvalidStateError,
    RunNotFound,
    StoreError,
)
from tracker.manager import ExpManager, RunUpdate, now_ms
from tracker.uri import mask
from tracker.validation import as_number, check_point

if TYPE_CHECKING:
    from tracker.search import Expr, OrderKey

EXP = ExperimentRow.__table__
RUNS = RunRow.__table__
PARAMS = ParamRow.__table__
TAGS = TagRow.__table__
METRICS = MetricRow.__table__
LATEST = LatestMetricRow.__table__
ARTIFACTS = ArtifactRow.__table__

# Statements built once: SQLAlchemy then only binds values (building them per call cost
# more than the SQLite work on the hot paths).
_RUN_BY_ID = select(RUNS).where(RUNS.c.id == bindparam("id"))
# NO KEY UPDATE (PostgreSQL): no key changes, so it does not wait for the FOR KEY SHARE lock
# that a flush's foreign keys hold on the run's row (a heartbeat must not wait for a flush).
_RUN_FOR_UPDATE = _RUN_BY_ID.with_for_update(key_share=True)
_RUN_STATE = select(RUNS.c.pk, RUNS.c.lifecycle).where(RUNS.c.id == bindparam("id"))
_EXP_BY_ID = select(EXP).where(EXP.c.id == bindparam("id"))
_PARAMS_OF = select(PARAMS.c.key, PARAMS.c.value).where(
    PARAMS.c.run_pk == bindparam("pk"), PARAMS.c.key.in_(bindparam("keys", expanding=True))
)
_UPDATE_RUN = RUNS.update().where(RUNS.c.pk == bindparam("_pk"))
# Child rows are reached through the public run id in the same statement, never through a
# row key remembered from an earlier one: SQLite gives a purged run's key to the next run.
_HISTORY = (
    select(METRICS.c.key, METRICS.c.value, METRICS.c.step, METRICS.c.timestamp)
    .join(RUNS, RUNS.c.pk == METRICS.c.run_pk)
    .where(RUNS.c.id == bindparam("id"), METRICS.c.key == bindparam("key"))
    .order_by(METRICS.c.step, METRICS.c.timestamp, METRICS.c.id)
)
_ARTIFACTS_OF = (
    select(ARTIFACTS.c.path, ARTIFACTS.c.size, ARTIFACTS.c.checksum, ARTIFACTS.c.mtime)
    .join(RUNS, RUNS.c.pk == ARTIFACTS.c.run_pk)
    .where(RUNS.c.id == bindparam("id"))
    .order_by(ARTIFACTS.c.path)
)
_PK_OF = select(RUNS.c.pk).where(RUNS.c.id == bindparam("id"))
_PK_FOR_UPDATE = _PK_OF.with_for_update()
_BEAT_IF_RUNNING = (
    RUNS.update()
    .where(RUNS.c.pk == bindparam("_pk"), RUNS.c.status == RunStatus.RUNNING.value)
    .values(heartbeat=bindparam("_at"))
)

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 500  # ids per IN (...) list, well under every driver's bound-parameter limit


class SQLExpManager(ExpManager):
    """Metadata in a SQL database (SQLite file or PostgreSQL), artifacts through fsspec.

    Args:
        uri: a SQLAlchemy URL such as ``sqlite:///path/tracker.db`` or
            ``postgresql+psycopg://user@host/db``.
        upgrade: migrate an older schema on open (default) instead of refusing it.
    """

    def __init__(
        self,
        uri: str,
        default_exp_name: str = "Experiment",
        artifact_uri: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        *,
        upgrade: bool = True,
    ) -> None:
        super().__init__(uri, default_exp_name, artifact_uri, storage_options)
        self.db = Database(uri, upgrade=upgrade)
        self._sql = _RawSQL(self.db.engine.dialect.paramstyle)
        #: Below this many runs a plain scan and sort is fast anyway (see ``_lead_by_key``).
        self.lead_min_runs = 1_000

    def close(self) -> None:
        self.db.dispose()

    @classmethod
    def upgrade_store(cls, uri: str) -> str:
        database = Database(uri, upgrade=True)
        try:
            return f"{mask(uri)}: schema v{database.schema_version()}"
        finally:
            database.dispose()

    # ------------------------------------------------------------------------------ experiments

    @retried
    def create_experiment(self, name: str) -> ExperimentInfo:
        try:
            with self.db.write() as conn:
                ts = now_ms()
                pk = conn.execute(
                    EXP.insert().values(name=name, lifecycle="active", creation_time=ts)
                ).inserted_primary_key[0]
        except StoreError as e:
            if isinstance(e.__cause__, exc.IntegrityError):
                raise AlreadyExistsError(f"an experiment named {name!r} already exists") from e
            raise
        return ExperimentInfo(str(pk), name, Lifecycle.ACTIVE, ts)

    @retried
    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        pk = _int_id(experiment_id)
        with self.db.read() as conn:
            row = None if pk is None else conn.execute(_EXP_BY_ID, {"id": pk}).first()
        if row is None:
            raise ExperimentNotFound(f"no experiment with id {experiment_id!r}")
        return _exp_info(row)

    @retried
    def find_experiment(self, name: str) -> ExperimentInfo | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(EXP).where(EXP.c.name == name, EXP.c.lifecycle == "active")
            ).first()
        return None if row is None else _exp_info(row)

    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        query = select(EXP).where(EXP.c.lifecycle.in_(view.stages())).order_by(EXP.c.id)
        with self.db.read() as conn:
            return [_exp_info(r) for r in conn.execute(query)]

    def set_experiment_lifecycle(self, experiment_id: str, lifecycle: Lifecycle) -> None:
        info = self.get_experiment(experiment_id)
        try:
            with self.db.write() as conn:
                conn.execute(
                    update(EXP).where(EXP.c.id == int(info.experiment_id)),
                    {"lifecycle": Lifecycle(lifecycle).value},
                )
        except StoreError as e:
            if isinstance(e.__cause__, exc.IntegrityError):
                raise AlreadyExistsError(
                    f"cannot restore experiment {info.name!r}: an active experiment has that "
                    "name; rename or delete it first"
                ) from e
            raise

    # ------------------------------------------------------------------------------------- runs

    @retried
    def create_run(
        self,
        experiment_id: str,
        name: str,
        status: RunStatus = RunStatus.RUNNING,
        *,
        start_time: int | None = None,
        pid: int | None = None,
        host: str | None = None,
        run_id: str | None = None,
    ) -> RunInfo:
        if run_id is None:
            run_id = uuid.uuid4().hex
        elif not _RUN_ID.fullmatch(run_id):
            raise InvalidInputError(f"run id {run_id!r} must be 32 lowercase hex digits")
        ts = now_ms()
        exp_pk = _int_id(experiment_id)
        values = {
            "id": run_id,
            "experiment_id": exp_pk,
            "name": name,
            "status": RunStatus(status).value,
            "lifecycle": "active",
            "start_time": start_time if start_time is not None else ts,
            "heartbeat": ts if status is RunStatus.RUNNING else None,
            "pid": pid,
            "host": host,
        }
        try:
            with self.db.write() as conn:
                exp = None if exp_pk is None else conn.execute(_EXP_BY_ID, {"id": exp_pk}).first()
                if exp is None or exp.lifecycle != "active":
                    state = "is deleted" if exp is not None else "does not exist"
                    raise ExperimentNotFound(f"experiment {experiment_id!r} {state}")
                conn.execute(RUNS.insert(), values)
        except StoreError as e:
            if isinstance(e.__cause__, exc.IntegrityError):
                raise AlreadyExistsError(f"a run with id {run_id!r} already exists") from e
            raise
        return _run_info({**values, "experiment_id": str(exp_pk), "end_time": None})

    @retried
    def get_run_info(self, run_id: str) -> RunInfo:
        with self.db.read() as conn:
            row = conn.execute(_RUN_BY_ID, {"id": run_id}).first()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return _run_info(row._mapping)

    def _update_run(self, run_id: str, update: RunUpdate, wait: float | None = None) -> RunInfo:
        # A bounded wait (the writer's heartbeat) fails fast instead of retrying.
        if wait is not None:
            return self._write_update(run_id, update, wait)
        return retried(self._write_update)(run_id, update, None)

    def _write_update(self, run_id: str, update: RunUpdate, wait: float | None) -> RunInfo:
        with self.db.write(wait) as conn:
            row = conn.execute(_RUN_FOR_UPDATE, {"id": run_id}).first()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            update.check(run_id, RunStatus(row.status))
            values = update.fields()
            if update.status is not None:
                values["status"] = update.status.value
            if update.lifecycle is not None:
                values["lifecycle"] = update.lifecycle.value
            if values:
                conn.execute(_UPDATE_RUN, {"_pk": row.pk, **values})
        return _run_info({**row._mapping, **values, "experiment_id": str(row.experiment_id)})

    @retried
    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        out: dict[str, RunData] = {}
        with self.db.read() as conn:
            for chunk in _chunks(list(run_ids)):
                ids = dict(
                    conn.execute(select(RUNS.c.pk, RUNS.c.id).where(RUNS.c.id.in_(chunk))).all()
                )
                data = {pk: RunData() for pk in ids}
                for table, attr in ((PARAMS, "params"), (LATEST, "metrics"), (TAGS, "tags")):
                    query = select(table.c.run_pk, table.c.key, table.c.value).where(
                        table.c.run_pk.in_(list(ids))
                    )
                    for pk, key, value in conn.execute(query):
                        if attr == "metrics" and value is None:
                            value = float("nan")
                        getattr(data[pk], attr)[key] = value
                out.update({ids[pk]: d for pk, d in data.items()})
        return out

    def _list_run_infos(
        self, experiment_ids: Sequence[str] | None, view: ViewType
    ) -> list[RunInfo]:
        return self._search_run_infos(experiment_ids, None, [], None, view)

    @retried
    def _search_run_infos(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[RunInfo]:
        from tracker.backends.sql.query import select_runs, select_runs_key_first

        pks = None
        if experiment_ids is not None:
            pks = [p for p in (_int_id(e) for e in experiment_ids) if p is not None]
        stages = ViewType(view).stages()
        with self.db.read() as conn:
            if self.db.dialect == "postgresql":
                # JIT compiles a query whose estimated cost is high, as one with many subplans
                # is: 16 s for a 200-clause filter over 2,000 runs that runs in 1.2 s without.
                conn.exec_driver_sql("SET LOCAL jit = off")
            if self._lead_by_key(conn, order, pks, stages, max_results):
                having, without = select_runs_key_first(
                    expr, order, pks, stages, max_results, self.db.dialect
                )
                rows = conn.execute(having).all()
                if max_results is None or len(rows) < max_results:
                    rest = None if max_results is None else max_results - len(rows)
                    rows += conn.execute(without.limit(rest)).all()
            else:
                query = select_runs(expr, order, pks, stages, max_results, self.db.dialect)
                rows = conn.execute(query).all()
        return [_run_info({**r._mapping, "experiment_id": str(r.experiment_id)}) for r in rows]

    def _lead_by_key(
        self,
        conn: Connection,
        order: Sequence[Any],
        pks: list[int] | None,
        stages: tuple[str, ...],
        limit: int | None,
    ) -> bool:
        """Whether to read the first page in the order of its first key's index: on SQLite
        (PostgreSQL's planner has statistics), for a page of a big experiment, when the key is
        not much more common across the store than the experiment's runs."""
        if self.db.dialect != "sqlite" or limit is None or not order:
            return False
        if order[0].kind == "attribute":
            return False
        query = select(func.count()).select_from(RUNS).where(RUNS.c.lifecycle.in_(stages))
        if pks is not None:
            query = query.where(RUNS.c.experiment_id.in_(pks))
        n_runs = conn.execute(query).scalar() or 0
        if n_runs < max(self.lead_min_runs, 10 * limit):
            return False
        table = {"metric": LATEST, "param": PARAMS, "tag": TAGS}[order[0].kind]
        n_key = conn.execute(
            select(func.count()).select_from(table).where(table.c.key == order[0].key)
        ).scalar()
        return (n_key or 0) <= 4 * n_runs

    @retried
    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if not (params or metrics or tags):
            return
        with self._writable(run_id) as (conn, pk):
            if params:
                self._insert_params(conn, pk, run_id, params)
            if metrics:
                self._insert_metrics(conn, pk, metrics)
                if self.db.dialect == "sqlite":
                    # SQLite has one write lock for the whole file: under contention a
                    # heartbeat may wait long for it, while this flush holds it now.
                    conn.execute(_BEAT_IF_RUNNING, {"_pk": pk, "_at": now_ms()})
            if tags:
                conn.exec_driver_sql(self._sql.upsert_tag, [(pk, k, v) for k, v in tags.items()])

    def _insert_params(
        self, conn: Connection, pk: int, run_id: str, params: Mapping[str, str]
    ) -> None:
        existing = dict(conn.execute(_PARAMS_OF, {"pk": pk, "keys": list(params)}).all())
        for key, old in existing.items():
            if old != params[key]:
                raise InvalidInputError(
                    f"param {key!r} of run {run_id} is already {old!r}; params are immutable, "
                    f"so it cannot become {params[key]!r} (log it under another key, or use a tag)"
                )
        new = [(pk, k, v, as_number(v)) for k, v in params.items() if k not in existing]
        if new:
            conn.exec_driver_sql(self._sql.insert_param, new)

    def _insert_metrics(self, conn: Connection, pk: int, metrics: Sequence[Metric]) -> None:
        latest: dict[str, Metric] = {}
        rows = []
        for m in metrics:
            rows.append((pk, m.key, m.step, m.timestamp, m.value if m.value == m.value else None))
            cur = latest.get(m.key)
            if cur is None or (m.step, m.timestamp) >= (cur.step, cur.timestamp):
                latest[m.key] = m
        try:
            conn.exec_driver_sql(self._sql.insert_metric, rows)
        except (OverflowError, exc.DataError):
            # A point the caller did not validate (a direct log_batch, an importer): name it.
            # Checked only here so that the writer's hot path pays nothing.
            for m in metrics:
                check_point(m)
            raise
        conn.exec_driver_sql(
            self._sql.upsert_latest,
            [
                (pk, m.key, m.step, m.timestamp, m.value if m.value == m.value else None)
                for m in latest.values()
            ],
        )

    @contextmanager
    def _writable(self, run_id: str) -> Iterator[tuple[Connection, int]]:
        """A write transaction on a run that is not deleted (ended runs take data, as in
        Qlib and MLflow)."""
        with self.db.write() as conn:
            row = conn.execute(_RUN_STATE, {"id": run_id}).first()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if row.lifecycle != "active":
                raise InvalidStateError(f"run {run_id} is deleted; restore it before writing")
            yield conn, row.pk

    @retried
    def delete_tags(self, run_id: str, keys: Sequence[str]) -> None:
        with self._writable(run_id) as (conn, pk):
            conn.execute(delete(TAGS).where(TAGS.c.run_pk == pk, TAGS.c.key.in_(list(keys))))

    @retried
    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self.db.read() as conn:
            rows = conn.execute(_HISTORY, {"id": run_id, "key": key}).all()
            if not rows:
                _require_run(conn, run_id)
        return [Metric(k, float("nan") if v is None else v, s, t) for k, v, s, t in rows]

    def delete_run_permanently(self, run_id: str) -> None:
        with self.db.write() as conn:
            pk = _require_run(conn, run_id, for_update=True)
            for table in (METRICS, LATEST, PARAMS, TAGS, ARTIFACTS):
                conn.execute(delete(table).where(table.c.run_pk == pk))
            conn.execute(delete(RUNS).where(RUNS.c.pk == pk))

    # -------------------------------------------------------------------------------- artifacts

    @retried
    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
        if not entries:
            return
        with self._writable(run_id) as (conn, pk):
            conn.exec_driver_sql(
                self._sql.upsert_artifact,
                [(pk, e.path, e.size, e.checksum, e.mtime) for e in entries],
            )

    @retried
    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        if not paths:
            return
        paths = list(paths)
        with self._writable(run_id) as (conn, pk):
            for i in range(0, len(paths), 500):  # within SQLite's limit on bound parameters
                chunk = ARTIFACTS.c.path.in_(paths[i : i + 500])
                conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.run_pk == pk, chunk))

    @retried
    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        with self.db.read() as conn:
            rows = conn.execute(_ARTIFACTS_OF, {"id": run_id}).all()
            if not rows:
                _require_run(conn, run_id)
        return [ArtifactEntry(*r) for r in rows]


class _RawSQL:
    """Hot-path statements as driver SQL: executemany on the DBAPI cursor skips SQLAlchemy's
    per-row parameter processing, which is most of the cost of a large metric batch."""

    def __init__(self, paramstyle: str) -> None:
        def marks(n: int) -> str:
            return ", ".join(["?" if paramstyle == "qmark" else "%s"] * n)

        self.insert_metric = (
            f'INSERT INTO metrics (run_pk, "key", step, timestamp, value) VALUES ({marks(5)})'
        )
        self.upsert_latest = (
            f'INSERT INTO latest_metrics (run_pk, "key", step, timestamp, value) '
            f"VALUES ({marks(5)}) "
            'ON CONFLICT (run_pk, "key") DO UPDATE SET step = excluded.step, '
            "timestamp = excluded.timestamp, value = excluded.value "
            "WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
            "AND excluded.timestamp >= latest_metrics.timestamp)"
        )
        self.insert_param = (
            f'INSERT INTO params (run_pk, "key", value, value_num) VALUES ({marks(4)}) '
            'ON CONFLICT (run_pk, "key") DO NOTHING'
        )
        self.upsert_tag = (
            f'INSERT INTO tags (run_pk, "key", value) VALUES ({marks(3)}) '
            'ON CONFLICT (run_pk, "key") DO UPDATE SET value = excluded.value'
        )
        self.upsert_artifact = (
            f"INSERT INTO artifacts (run_pk, path, size, checksum, mtime) VALUES ({marks(5)}) "
            "ON CONFLICT (run_pk, path) DO UPDATE SET size = excluded.size, "
            "checksum = excluded.checksum, mtime = excluded.mtime"
        )


def _require_run(conn: Connection, run_id: str, *, for_update: bool = False) -> int:
    """The run's row key, read in the caller's transaction; RunNotFound if there is none."""
    pk = conn.execute(_PK_FOR_UPDATE if for_update else _PK_OF, {"id": run_id}).scalar()
    if pk is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return int(pk)


def _int_id(experiment_id: object) -> int | None:
    try:
        return int(str(experiment_id))
    except ValueError:
        return None


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _exp_info(row: Any) -> ExperimentInfo:
    return ExperimentInfo(str(row.id), row.name, Lifecycle(row.lifecycle), row.creation_time)


def _run_info(m: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        run_id=m["id"],
        experiment_id=str(m["experiment_id"]),
        name=m["name"],
        status=RunStatus(m["status"]),
        lifecycle=Lifecycle(m["lifecycle"]),
        start_time=m["start_time"],
        end_time=m["end_time"],
        heartbeat=m["heartbeat"],
        pid=m["pid"],
        host=m["host"],
    )
