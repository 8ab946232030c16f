"""Where a task pool's tasks are kept: the :class:`TaskQueue` protocol that
:class:`~tracker.online.workflow.task.manage.TaskManager` uses, and :class:`SQLTaskQueue`, the
one class that owns the ``task_queue`` table in the same SQL database as the runs.

The table lives on this module's own :class:`MetaData` (tracker's schema and migrations do not
know it) and is created on first use. Every statement that hands out or settles a task is one
atomic ``UPDATE … RETURNING``; see :meth:`SQLTaskQueue.fetch` and :meth:`SQLTaskQueue.reclaim`
for why each is safe on SQLite (the write lock is taken up front by ``BEGIN IMMEDIATE``) and on
PostgreSQL (row locks with ``SKIP LOCKED``).

A task document is Qlib's (``_id``, ``def``, ``filter``, ``status``, ``res``, ``priority``)
plus the queue's own fields, with ``def`` and ``res`` still pickled: the queue stores bytes,
:mod:`.document` turns them back into objects.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from tracker.backends.sql.db import Database
from tracker.errors import InvalidInputError, LeaseLost, NotFoundError
from tracker.online.workflow.task.document import (
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_WAITING,
    RecorderRef,
    check_status,
    task_id,
)

# RecorderRef too: task results pickled before it moved to .document name it here.
__all__ = ["Held", "RecorderRef", "Released", "SQLTaskQueue", "TaskQueue", "sql_queue"]

Query = Mapping[str, Any] | None

# Any constant other than db.py's: serialises creating this table between processes.
_PG_TABLE_LOCK = 0x7472_7173

metadata = MetaData()
TASKS = Table(
    "task_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pool", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("hash", String(64), nullable=False),
    Column("task_def", LargeBinary, nullable=False),
    Column("res", LargeBinary),
    # The status the task was fetched from: where it goes back to if its worker fails.
    Column("fetched_from", String(16)),
    Column("worker", String(255)),
    Column("lease_until", BigInteger),  # epoch ms; only set while running
    Column("attempts", Integer, nullable=False, default=0),  # failed attempts in this step
    Column("max_attempts", Integer, nullable=False, default=3),
    Column("error", Text),
    Column("run_id", String(32)),  # the run the (last) worker filled for this task
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    UniqueConstraint("pool", "hash", name="uq_task_queue_pool_hash"),
    Index("ix_task_queue_fetch", "pool", "status", "priority", "id"),
)
T = TASKS.c


class Released(NamedTuple):
    """A task taken from a worker (lease expired, or reset): the run it was filling and the
    status the task had before (``reset``) or has now (``reclaim``)."""

    id: int
    run_id: str | None
    status: str


class Held(NamedTuple):
    """What a settle or attach found: whether it wrote, and the task's run before it."""

    written: bool
    run_id: str | None


class TaskQueue(Protocol):
    """The storage a :class:`TaskManager` needs. Every method is atomic on its own; times are
    epoch milliseconds; ``worker`` is the ``host:pid`` holding a task; ``query`` is Qlib's
    Mongo-style task query (``status``/``_id``, a value or ``{"$in": [...]}``)."""

    def ids_by_hash(self, pool: str, hashes: Iterable[str]) -> dict[str, int]: ...

    def insert(self, pool: str, defs: Mapping[str, bytes], max_attempts: int, now: int) -> None:
        """Add ``{hash: pickled def}`` as waiting, skipping hashes already in the pool."""

    def fetch(
        self, pool: str, query: Query, status: str, worker: str, lease_until: int, now: int
    ) -> dict[str, Any] | None:
        """Take the best matching task in ``status`` (priority, then age) for ``worker``."""

    def reclaim(self, pool: str, now: int) -> list[Released]:
        """Running tasks whose lease expired back where they came from (failed at the limit)."""

    def renew(self, tid: int, worker: str, lease_until: int, now: int) -> bool: ...

    def attach_run(self, tid: int, worker: str, run_id: str) -> Held: ...

    def settle(
        self, pool: str, tid: int, worker: str, values: Mapping[str, Any], now: int, strict: bool
    ) -> Held:
        """Write ``values`` (LeaseLost if another worker holds the task; with ``strict`` only
        while ``worker`` still holds it)."""

    def record_failure(self, tid: int, worker: str, error: str, now: int) -> str | None: ...

    def query(self, pool: str, query: Query) -> list[dict[str, Any]]: ...

    def remove(self, pool: str, query: Query) -> int: ...

    def reset(self, pool: str, query: Query, status: str, now: int) -> list[Released]: ...

    def prioritize(self, pool: str, tid: int, priority: int) -> bool: ...

    def counts(self, pool: str, query: Query, now: int) -> tuple[dict[str, int], int]:
        """Counts by status, and how many running tasks hold a live lease."""

    def pools(self) -> list[str]: ...

    def pool_stats(self, pools: Sequence[str] | None, now: int) -> dict[str, dict[str, int]]:
        """``{pool: {status: count, "stale": running tasks whose lease expired}}``; creates
        nothing (a listing of a store without pools is empty)."""


def sql_queue(manager: Any) -> SQLTaskQueue:
    """The queue in ``manager``'s SQL database."""
    db = getattr(manager, "db", None)
    if not isinstance(db, Database):
        raise InvalidInputError(
            f"task pools live in a SQL store (SQLite or PostgreSQL); {manager!r} has none: "
            "open one with tracker.connect('DIR' or 'postgresql+psycopg://…')"
        )
    return SQLTaskQueue(db)


class SQLTaskQueue:
    """:class:`TaskQueue` on the ``task_queue`` table of a tracker SQL database."""

    _ready: weakref.WeakSet[Database] = weakref.WeakSet()

    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_table(self) -> None:
        """Create the table once per database; safe when several workers start at once."""
        if self.db in self._ready:
            return
        with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_TABLE_LOCK})")
            metadata.create_all(conn, checkfirst=True)
        self._ready.add(self.db)

    # ------------------------------------------------------------------------------ create

    def ids_by_hash(self, pool: str, hashes: Iterable[str]) -> dict[str, int]:
        unique, out = sorted(set(hashes)), {}
        with self.db.read() as conn:
            for i in range(0, len(unique), 500):  # well under every driver's parameter limit
                chunk = unique[i : i + 500]
                stmt = select(T.hash, T.id).where(T.pool == pool, T.hash.in_(chunk))
                out.update((h, tid) for h, tid in conn.execute(stmt))
        return out

    def insert(self, pool: str, defs: Mapping[str, bytes], max_attempts: int, now: int) -> None:
        rows = [
            {
                "pool": pool,
                "status": STATUS_WAITING,
                "priority": 0,
                "hash": h,
                "task_def": data,
                "attempts": 0,
                "max_attempts": max_attempts,
                "created": now,
                "updated": now,
            }
            for h, data in defs.items()
        ]
        insert = (postgresql if self.db.dialect == "postgresql" else sqlite).insert(TASKS)
        with self.db.write() as conn:  # another process may have inserted some meanwhile
            conn.execute(insert.on_conflict_do_nothing(index_elements=["pool", "hash"]), rows)

    # ------------------------------------------------------------------------------- lease

    def fetch(
        self, pool: str, query: Query, status: str, worker: str, lease_until: int, now: int
    ) -> dict[str, Any] | None:
        """One ``UPDATE … WHERE id = (SELECT … ORDER BY priority DESC, id LIMIT 1) RETURNING``.
        SQLite: ``BEGIN IMMEDIATE`` holds the database's write lock for the whole statement,
        so no two workers can pick the same row. PostgreSQL: the subquery takes the row lock
        ``FOR UPDATE SKIP LOCKED``, so concurrent workers skip rows being handed out instead
        of waiting and then picking the same one; the outer WHERE re-checks the status."""
        pick = TASKS.alias("pick")
        pc = pick.c
        clauses = [ClauseAdapter(pick).traverse(c) for c in _where(pool, query)]
        inner = select(pc.id).where(*clauses, pc.status == status)
        inner = inner.order_by(pc.priority.desc(), pc.id).limit(1)
        if self.db.dialect == "postgresql":
            inner = inner.with_for_update(skip_locked=True)
        values = {
            "status": STATUS_RUNNING,
            "fetched_from": status,
            "worker": worker,
            "lease_until": lease_until,
            "updated": now,
        }
        stmt = (
            update(TASKS)
            .where(T.id == inner.scalar_subquery(), T.status == status)
            .values(**values)
            .returning(*TASKS.c)
        )
        with self.db.write() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _document(row)

    def reclaim(self, pool: str, now: int) -> list[Released]:
        """One UPDATE: on PostgreSQL a concurrent reclaimer blocks on the row lock and then
        re-checks the WHERE against the new row (no longer running), so a task is reclaimed
        once."""
        message = (
            literal("lease expired: worker ")
            + func.coalesce(T.worker, "?")
            + literal(" stopped renewing it (process killed or host lost)")
        )
        stmt = (
            update(TASKS)
            .where(T.pool == pool, T.status == STATUS_RUNNING, T.lease_until < now)
            .values(**_fail_values(message), updated=now)
            .returning(T.id, T.run_id, T.status)
        )
        with self.db.write() as conn:
            return [Released(*row) for row in conn.execute(stmt)]

    def renew(self, tid: int, worker: str, lease_until: int, now: int) -> bool:
        stmt = update(TASKS).where(T.id == tid, T.status == STATUS_RUNNING, T.worker == worker)
        with self.db.write() as conn:
            return conn.execute(stmt.values(lease_until=lease_until, updated=now)).rowcount == 1

    def attach_run(self, tid: int, worker: str, run_id: str) -> Held:
        with self.db.write() as conn:
            row = conn.execute(
                select(T.run_id, T.status, T.worker).where(T.id == tid).with_for_update()
            ).first()
            if row is None or row.status != STATUS_RUNNING or row.worker != worker:
                return Held(False, None)
            conn.execute(update(TASKS).where(T.id == tid).values(run_id=run_id))
        return Held(True, row.run_id)

    # ------------------------------------------------------------------------------ settle

    def settle(
        self, pool: str, tid: int, worker: str, values: Mapping[str, Any], now: int, strict: bool
    ) -> Held:
        with self.db.write() as conn:
            stmt = select(T.status, T.worker, T.run_id).where(T.id == tid, T.pool == pool)
            row = conn.execute(stmt.with_for_update()).first()
            if row is None:
                raise NotFoundError(f"no task {tid} in task pool {pool!r}")
            if row.status == STATUS_RUNNING and row.worker != worker:
                raise LeaseLost(
                    f"task {tid} of pool {pool!r} is held by worker {row.worker}, not {worker}: "
                    "this worker's lease expired and the task was handed on, so this result is "
                    "dropped (give a longer lease_seconds if the heartbeat is starved)"
                )
            if strict and row.status != STATUS_RUNNING:
                return Held(False, row.run_id)
            conn.execute(update(TASKS).where(T.id == tid).values(**values, updated=now))
        return Held(True, row.run_id)

    def record_failure(self, tid: int, worker: str, error: str, now: int) -> str | None:
        """Count a failed attempt of a task ``worker`` holds; its new status (None if not
        held)."""
        stmt = update(TASKS).where(T.id == tid, T.status == STATUS_RUNNING, T.worker == worker)
        stmt = stmt.values(**_fail_values(error), updated=now).returning(T.status)
        with self.db.write() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else row.status

    # ------------------------------------------------------------------------- maintenance

    def query(self, pool: str, query: Query) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(select(TASKS).where(*_where(pool, query)).order_by(T.id)).all()
        return [_document(row) for row in rows]

    def remove(self, pool: str, query: Query) -> int:
        with self.db.write() as conn:
            return conn.execute(delete(TASKS).where(*_where(pool, query))).rowcount

    def reset(self, pool: str, query: Query, status: str, now: int) -> list[Released]:
        clauses = _where(pool, query)
        with self.db.write() as conn:
            stmt = select(T.id, T.run_id, T.status).where(*clauses).with_for_update()
            rows = [Released(*row) for row in conn.execute(stmt)]
            conn.execute(
                update(TASKS)
                .where(T.id.in_([r.id for r in rows]))
                .values(status=status, worker=None, lease_until=None, attempts=0, updated=now)
            )
        return rows

    def prioritize(self, pool: str, tid: int, priority: int) -> bool:
        stmt = update(TASKS).where(T.id == tid, T.pool == pool).values(priority=priority)
        with self.db.write() as conn:
            return conn.execute(stmt).rowcount == 1

    def counts(self, pool: str, query: Query, now: int) -> tuple[dict[str, int], int]:
        live = func.sum(case((T.lease_until >= now, 1), else_=0))
        stmt = select(T.status, func.count(), live).where(*_where(pool, query))
        with self.db.read() as conn:
            rows = conn.execute(stmt.group_by(T.status)).all()
        n_live = sum(int(n or 0) for status, _, n in rows if status == STATUS_RUNNING)
        return {status: int(n) for status, n, _ in rows}, n_live

    def pools(self) -> list[str]:
        with self.db.read() as conn:
            return list(conn.execute(select(T.pool).distinct().order_by(T.pool)).scalars())

    def pool_stats(self, pools: Sequence[str] | None, now: int) -> dict[str, dict[str, int]]:
        stale = func.sum(case((T.lease_until < now, 1), else_=0))
        stmt = select(T.pool, T.status, func.count(), stale).group_by(T.pool, T.status)
        if pools is not None:
            stmt = stmt.where(T.pool.in_(list(pools)))
        out: dict[str, dict[str, int]] = {}
        with self.db.read() as conn:
            if not conn.dialect.has_table(conn, TASKS.name):
                return {}
            for pool, status, count, n_stale in conn.execute(stmt.order_by(T.pool)):
                counts = out.setdefault(pool, {})
                counts[status] = int(count)
                if status == STATUS_RUNNING and n_stale:
                    counts["stale"] = int(n_stale)
        return out


def _document(row: Any) -> dict[str, Any]:
    m = row._mapping
    out = {k: m[k] for k in m if k not in ("id", "task_def", "res")}
    return {"_id": m["id"], "def": m["task_def"], "filter": m["task_def"], "res": m["res"], **out}


def _where(pool: str, query: Query) -> list[ColumnElement[bool]]:
    """Clauses for Qlib's Mongo-style query: ``{"status": S}``, ``{"status": {"$in": […]}}``,
    ``{"_id": ID}``, ``{"_id": {"$in": […]}}`` (combined with AND)."""
    clauses: list[ColumnElement[bool]] = [T.pool == pool]
    query = dict(query or {})
    unknown = sorted(set(query) - {"status", "_id"})
    if unknown:
        raise InvalidInputError(
            f"task query keys {unknown} are not supported: use {{'status': S}}, "
            "{'status': {'$in': [...]}}, {'_id': ID} or {'_id': {'$in': [...]}}"
        )
    for key, column, convert in (("status", T.status, check_status), ("_id", T.id, task_id)):
        if key not in query:
            continue
        value = query[key]
        if isinstance(value, Mapping):
            if set(value) != {"$in"} or isinstance(value["$in"], (str, bytes)):
                raise InvalidInputError(
                    f"task query {key}={value!r} is not supported: give a value or {{'$in': [...]}}"
                )
            clauses.append(column.in_([convert(v) for v in value["$in"]]))
        else:
            clauses.append(column == convert(value))
    return clauses


def _fail_values(error: Any) -> dict[str, Any]:
    """SET values that count a failed attempt: back to the status it was fetched from, or
    ``failed`` once ``max_attempts`` is reached; the error text is kept either way."""
    status = case((T.attempts + 1 >= T.max_attempts, STATUS_FAILED), else_=T.fetched_from)
    return {
        "status": status,
        "attempts": T.attempts + 1,
        "error": error,
        "worker": None,
        "lease_until": None,
    }
