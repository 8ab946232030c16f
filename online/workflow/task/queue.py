"""The task queue's table and statements, in the same SQL database as the runs.

The table lives on this module's own :class:`MetaData` (tracker's schema and migrations do not
know it) and is created on first use. Every statement that hands out or settles a task is one
atomic ``UPDATE … RETURNING``; see :func:`fetch` and :func:`reclaim` for why each is safe on
SQLite (the write lock is taken up front by ``BEGIN IMMEDIATE``) and on PostgreSQL (row locks
with ``SKIP LOCKED``).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import math
import pickle
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from tracker.backends.sql.db import Database
from tracker.errors import InvalidInputError, InvalidStateError, NotFoundError, RunNotFound
from tracker.manager import ExpManager
from tracker.recorder import Recorder

STATUS_WAITING = "waiting"
STATUS_RUNNING = "running"
STATUS_PART_DONE = "part_done"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUSES = (STATUS_WAITING, STATUS_RUNNING, STATUS_PART_DONE, STATUS_DONE, STATUS_FAILED)

PICKLE_PROTOCOL = 5
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

_ready: weakref.WeakSet[Database] = weakref.WeakSet()


def ensure_table(db: Database) -> None:
    """Create the table once per database; safe when several workers start at once."""
    if db in _ready:
        return
    with db.write() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_TABLE_LOCK})")
        metadata.create_all(conn, checkfirst=True)
    _ready.add(db)


# ------------------------------------------------------------------------------ canonical hash


def canonical(value: Any, path: str = "task") -> Any:
    """A JSON-able form in which equal tasks are equal: dict keys in any order, tuples as
    lists (as MongoDB stored them in Qlib), dates as ISO strings. Raises InvalidInputError
    for values without a stable form (arbitrary objects)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dt.datetime):  # also pandas.Timestamp
        return {"__datetime__": value.isoformat()}
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return {f"__{type(value).__name__}__": str(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: canonical(v, f"{path}.{k}") for k, v in value.items()}
        pairs = [[canonical(k, path), canonical(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {"__items__": sorted(pairs, key=_dumps)}
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted((canonical(v, path) for v in value), key=_dumps)}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return {"__object__": f"{value.__module__}.{value.__qualname__}"}
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy scalars
        return canonical(value.item(), path)
    raise InvalidInputError(
        f"{path} holds a {type(value).__name__} ({_short(value)}) that has no canonical form, "
        "so the task cannot be deduplicated: give plain values (dict, list, tuple, str, number, "
        "bool, None, dates) or the object's config dict instead"
    )


def task_hash(task: Any) -> str:
    """sha256 of the task's canonical JSON (sorted keys)."""
    return hashlib.sha256(_dumps(canonical(task)).encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- results, decoding


@dataclass(frozen=True)
class RecorderRef:
    """What is stored for a :class:`Recorder` result: its ids, not the live object (which
    holds the store's connections and would not unpickle elsewhere)."""

    run_id: str
    experiment_id: str
    name: str


def to_storable(res: Any) -> Any:
    """Recorders (also inside lists, tuples and dicts) replaced by :class:`RecorderRef`."""
    if isinstance(res, Recorder) and res.id is not None:
        return RecorderRef(res.id, str(res.experiment_id), res.name)
    if isinstance(res, (list, tuple)):
        return type(res)(to_storable(v) for v in res)
    if isinstance(res, dict):
        return {k: to_storable(v) for k, v in res.items()}
    return res


def from_storable(res: Any, manager: ExpManager) -> Any:
    """:class:`RecorderRef` back into a Recorder of ``manager`` (the ref itself if the run was
    purged meanwhile)."""
    if isinstance(res, RecorderRef):
        try:
            info = manager.get_run_info(res.run_id)
        except RunNotFound:
            return res
        return Recorder(manager, info.experiment_id, info.name, info=info)
    if isinstance(res, (list, tuple)):
        return type(res)(from_storable(v, manager) for v in res)
    if isinstance(res, dict):
        return {k: from_storable(v, manager) for k, v in res.items()}
    return res


def run_id_of(res: Any) -> str | None:
    return res.run_id if isinstance(res, RecorderRef) else None


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def row_to_task(row: Any, manager: ExpManager | None) -> dict[str, Any]:
    """A row as Qlib's task document (``_id``, ``def``, ``filter``, ``status``, ``res``,
    ``priority``) plus the queue's own fields. ``manager=None`` leaves ``def``/``res`` pickled."""
    m = row._mapping
    if manager is None:
        task_def, res = m["task_def"], m["res"]
    else:
        # Plain pickle, trusted as the pool's writers are: a worker then trains what the task
        # names anyway (README, "What tracker trusts").
        task_def = pickle.loads(m["task_def"])
        res = None if m["res"] is None else from_storable(pickle.loads(m["res"]), manager)
    out = {k: m[k] for k in m if k not in ("id", "task_def", "res")}
    return {"_id": m["id"], "def": task_def, "filter": task_def, "res": res, **out}


# ---------------------------------------------------------------------------------- queries


def where(pool: str, query: Mapping[str, Any] | None) -> list[ColumnElement[bool]]:
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


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise InvalidInputError(f"task status {status!r} is not one of {', '.join(STATUSES)}")
    return str(status)


def task_id(value: Any) -> int:
    """A task id: an int, a digit string (as typed on a command line), or a task dict."""
    if isinstance(value, Mapping) and "_id" in value:
        value = value["_id"]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise InvalidInputError(f"task id {value!r} must be a non-negative integer")
    return int(value)


def fetch(
    conn: Connection,
    dialect: str,
    clauses: list[ColumnElement[bool]],
    status: str,
    values: dict[str, Any],
) -> Any:
    """Hand the best matching task to one worker and return its row (None if none).

    One ``UPDATE … WHERE id = (SELECT … ORDER BY priority DESC, id LIMIT 1) RETURNING``.
    SQLite: the caller's ``BEGIN IMMEDIATE`` holds the database's write lock for the whole
    statement, so no two workers can pick the same row. PostgreSQL: the subquery takes the
    row lock ``FOR UPDATE SKIP LOCKED``, so concurrent workers skip rows being handed out
    instead of waiting and then picking the same one; the outer WHERE re-checks the status.
    """
    pick = TASKS.alias("pick")
    pc = pick.c
    inner = select(pc.id).where(*[ClauseAdapter(pick).traverse(c) for c in clauses])
    inner = inner.where(pc.status == status).order_by(pc.priority.desc(), pc.id).limit(1)
    if dialect == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    stmt = (
        update(TASKS)
        .where(T.id == inner.scalar_subquery(), T.status == status)
        .values(**values)
        .returning(*TASKS.c)
    )
    return conn.execute(stmt).first()


def fail_values(error: Any) -> dict[str, Any]:
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


def reclaim(conn: Connection, pool: str, now: int) -> list[Any]:
    """Put running tasks whose lease expired back where they were fetched from (failed after
    ``max_attempts``), counting the attempt; returns ``(id, run_id, status)`` rows.

    One UPDATE: on PostgreSQL a concurrent reclaimer blocks on the row lock and then re-checks
    the WHERE against the new row (no longer running), so a task is reclaimed once.
    """
    message = (
        literal("lease expired: worker ")
        + func.coalesce(T.worker, "?")
        + literal(" stopped renewing it (process killed or host lost)")
    )
    stmt = (
        update(TASKS)
        .where(T.pool == pool, T.status == STATUS_RUNNING, T.lease_until < now)
        .values(**fail_values(message), updated=now)
        .returning(T.id, T.run_id, T.status)
    )
    return list(conn.execute(stmt))


def pool_stats(conn: Connection, pools: Iterable[str] | None, now: int) -> dict[str, dict]:
    """``{pool: {status: count, …, "stale": running tasks whose lease expired}}``."""
    stale = func.sum(case((T.lease_until < now, 1), else_=0))
    stmt = select(T.pool, T.status, func.count(), stale).group_by(T.pool, T.status)
    if pools is not None:
        stmt = stmt.where(T.pool.in_(list(pools)))
    out: dict[str, dict[str, int]] = {}
    for pool, status, count, n_stale in conn.execute(stmt.order_by(T.pool)):
        counts = out.setdefault(pool, {})
        counts[status] = int(count)
        if status == STATUS_RUNNING and n_stale:
            counts["stale"] = int(n_stale)
    return out


# ------------------------------------------------------------------- per-task statements


class LeaseLost(InvalidStateError):
    """This worker no longer holds the task (its lease expired and another worker took it)."""


def new_rows(pool: str, tasks: Mapping[str, Any], max_attempts: int, now: int) -> list[dict]:
    return [
        {
            "pool": pool,
            "status": STATUS_WAITING,
            "priority": 0,
            "hash": h,
            "task_def": dumps(t),
            "attempts": 0,
            "max_attempts": max_attempts,
            "created": now,
            "updated": now,
        }
        for h, t in tasks.items()
    ]


def insert_new(conn: Connection, dialect: str, rows: list[dict]) -> None:
    """Insert, skipping tasks another process inserted meanwhile (same pool and hash)."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(TASKS)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["pool", "hash"]), rows)


def ids_by_hash(conn: Connection, pool: str, hashes: Iterable[str]) -> dict[str, int]:
    unique, out = sorted(set(hashes)), {}
    for i in range(0, len(unique), 500):  # well under every driver's bound-parameter limit
        stmt = select(T.hash, T.id).where(T.pool == pool, T.hash.in_(unique[i : i + 500]))
        out.update((h, tid) for h, tid in conn.execute(stmt))
    return out


def renew(conn: Connection, tid: int, worker: str, until: int, now: int) -> bool:
    """Extend the lease if ``worker`` still holds the task."""
    stmt = update(TASKS).where(T.id == tid, T.status == STATUS_RUNNING, T.worker == worker)
    return conn.execute(stmt.values(lease_until=until, updated=now)).rowcount == 1


def hold(conn: Connection, pool: str, tid: int, me: str) -> Any:
    """Lock the task's row; raise LeaseLost if another worker holds it."""
    stmt = select(T.status, T.worker, T.run_id).where(T.id == tid, T.pool == pool)
    row = conn.execute(stmt.with_for_update()).first()
    if row is None:
        raise NotFoundError(f"no task {tid} in task pool {pool!r}")
    if row.status == STATUS_RUNNING and row.worker != me:
        raise LeaseLost(
            f"task {tid} of pool {pool!r} is held by worker {row.worker}, not {me}: this "
            "worker's lease expired and the task was handed on, so this result is dropped "
            "(give a longer lease_seconds if the heartbeat is starved)"
        )
    return row


def record_failure(conn: Connection, tid: int, me: str, error: str, now: int) -> str | None:
    """Count a failed attempt of a task ``me`` holds; its new status (None if not held)."""
    stmt = update(TASKS).where(T.id == tid, T.status == STATUS_RUNNING, T.worker == me)
    row = conn.execute(stmt.values(**fail_values(error), updated=now).returning(T.status)).first()
    return None if row is None else row.status


def counts(
    conn: Connection, clauses: list[ColumnElement[bool]], now: int
) -> tuple[dict[str, int], int]:
    """Counts by status, and how many running tasks hold a live lease."""
    live = func.sum(case((T.lease_until >= now, 1), else_=0))
    rows = conn.execute(
        select(T.status, func.count(), live).where(*clauses).group_by(T.status)
    ).all()
    n_live = sum(int(n or 0) for status, _, n in rows if status == STATUS_RUNNING)
    return {status: int(n) for status, n, _ in rows}, n_live


def reset(conn: Connection, clauses: list[ColumnElement[bool]], status: str, now: int) -> list:
    """Set the status, clearing leases and attempts; returns the rows as they were."""
    rows = conn.execute(select(T.id, T.status, T.run_id).where(*clauses).with_for_update()).all()
    conn.execute(
        update(TASKS)
        .where(T.id.in_([r.id for r in rows]))
        .values(status=status, worker=None, lease_until=None, attempts=0, updated=now)
    )
    return rows
