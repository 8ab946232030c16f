"""Engine set-up, transactions and driver-error translation for the native store, in one place.

SQLite runs in WAL mode with ``synchronous=NORMAL`` and takes its write lock up front
(``BEGIN IMMEDIATE``), so concurrent writers queue on the busy timeout instead of failing
half-way through a transaction when a read lock cannot be upgraded.

A driver error that running the transaction again may cure (a busy lock, a dropped connection)
becomes :class:`StoreUnavailable`, and only when nothing of the transaction was committed: on
PostgreSQL a connection lost during COMMIT is resolved by asking the server whether that
transaction committed. Store calls wrapped in :func:`retried` run again on it.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, exc, select
from sqlalchemy.pool import NullPool

from tracker.backends.sql import migrations
from tracker.backends.sql.models import SCHEMA_VERSION, SchemaRow, metadata
from tracker.errors import (
    BackendUnavailable,
    ConfigError,
    SchemaVersionError,
    StoreError,
    StoreUnavailable,
)
from tracker.redact import mask, one_line

BUSY_TIMEOUT_S = 60.0
#: A store call retries a transient error for this long after its first failure: enough for
#: a reconnect or a failover, short enough to report a store that is really gone.
RETRY_SYNC_S = 10.0
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.05, 1.0
# Any constant: serialises schema creation and upgrades between processes on PostgreSQL.
_PG_SCHEMA_LOCK = 0x7472_6B72


class Database:
    """A metadata database: one engine, write/read transactions, schema checks.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://…``).
        upgrade: migrate an older schema forward on open; if False an older schema raises
            :class:`SchemaVersionError` naming the command that upgrades it.
    """

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (db := ref()) is not None and db._after_fork())
        self.ensure_schema(upgrade=upgrade)

    def _after_fork(self) -> None:
        # Pooled connections must not be shared with a forked child.
        self.engine.dispose(close=False)

    @contextmanager
    def write(self, wait: float | None = None) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error. ``wait`` bounds
        the wait for locks in seconds (default: the busy timeout on SQLite, none on
        PostgreSQL)."""
        with _translate(), self.engine.connect() as conn:
            conn.execution_options(tracker_write=True, tracker_wait=wait)
            with conn.begin() as trans:
                xid = self._start_write(conn, wait)
                yield conn
                self._commit(trans, xid)

    def _start_write(self, conn: Connection, wait: float | None) -> int | None:
        """PostgreSQL: set the lock wait and return the transaction's id (see ``_commit``)."""
        if self.dialect != "postgresql":
            return None  # SQLite's lock wait is set in its "begin" hook
        if wait is None:
            return int(conn.exec_driver_sql("SELECT txid_current()").scalar_one())
        row = conn.exec_driver_sql(
            "SELECT txid_current(), set_config('lock_timeout', %(ms)s, true)",
            {"ms": str(int(wait * 1000))},
        ).one()
        return int(row[0])

    def _commit(self, trans: Any, xid: int | None) -> None:
        try:
            trans.commit()
        except exc.DBAPIError as e:
            # A connection lost during COMMIT leaves the outcome unknown: running the
            # transaction again could write its rows twice, so ask the server.
            if xid is None or not is_transient(e) or not self._committed(xid):
                raise

    def _committed(self, xid: int) -> bool:
        """Whether transaction ``xid`` committed (PostgreSQL keeps every outcome); waits while
        its backend is still going away."""
        deadline = time.monotonic() + RETRY_SYNC_S
        while True:
            try:
                with self.engine.connect() as conn:
                    status = conn.exec_driver_sql(f"SELECT txid_status({int(xid)})").scalar()
            except exc.DBAPIError as e:
                if not is_transient(e):
                    raise
                status = None
            if status in ("committed", "aborted"):
                return status == "committed"
            if time.monotonic() > deadline:
                raise StoreError(
                    f"lost the connection while committing transaction {xid} and could not "
                    f"learn whether it committed (status {status!r}); its writes may be missing"
                )
            time.sleep(_BACKOFF_FIRST_S)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with _translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    def schema_version(self) -> int | None:
        """The version recorded in the store, or None for an empty database."""
        with self.read() as conn:
            return _read_version(conn)

    def ensure_schema(self, *, upgrade: bool = True) -> None:
        try:
            found = self.schema_version()
        except StoreError:
            found = None  # no tables yet
        if found == SCHEMA_VERSION:
            return
        _check_not_newer(found, self.url)
        if found is not None and not upgrade:
            raise SchemaVersionError(
                f"store {mask(self.url)!r} has schema v{found}, this tracker expects "
                f"v{SCHEMA_VERSION}: run `tracker db upgrade` (or open it with upgrade=True)"
            )
        self.upgrade()

    def upgrade(self) -> int:
        """Create the schema or migrate it forward; safe when several processes race."""
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})")
            found = _read_version(conn) if _has_schema_table(conn) else None
            _check_not_newer(found, self.url)
            if found is None:
                metadata.create_all(conn)
                conn.execute(SchemaRow.__table__.insert().values(id=1, version=SCHEMA_VERSION))
                return SCHEMA_VERSION
            for version, step in migrations.steps_after(found):
                step(conn)
                conn.execute(
                    SchemaRow.__table__.update().where(SchemaRow.__table__.c.id == 1),
                    {"version": version},
                )
            return _read_version(conn) or SCHEMA_VERSION

    def dispose(self) -> None:
        self.engine.dispose()


def _check_not_newer(found: int | None, url: str) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"store {mask(url)!r} has schema v{found}, written by a newer tracker than this one "
            f"(v{SCHEMA_VERSION}): upgrade tracker (pip install -U qlib-tracker) to open it"
        )


def _has_schema_table(conn: Connection) -> bool:
    return conn.dialect.has_table(conn, SchemaRow.__tablename__)


def _read_version(conn: Connection) -> int | None:
    if not _has_schema_table(conn):
        return None
    row = conn.execute(select(SchemaRow.__table__.c.version)).first()
    return None if row is None else int(row[0])


def is_transient(error: BaseException) -> bool:
    """Whether a driver error (or one it caused) may pass if the transaction runs again: a
    busy SQLite database, a lost or refused PostgreSQL connection, a lock or statement timeout,
    a serialization failure, a full connection pool."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, exc.TimeoutError):
            return True
        if isinstance(seen, exc.DBAPIError):
            if seen.connection_invalidated:
                return True
            if not isinstance(seen, (exc.OperationalError, exc.InterfaceError)):
                return False
            if type(seen.orig).__module__.startswith("sqlite3"):
                # SQLite's OperationalError also covers a full disk or a missing table.
                text = str(seen.orig).lower()
                return "locked" in text or "busy" in text
            return True
        seen = seen.__cause__ or seen.__context__
    return False


P = ParamSpec("P")
T = TypeVar("T")
_retrying = threading.local()


def retried(call: Callable[P, T]) -> Callable[P, T]:
    """Run a store call again, with backoff, when it fails with StoreUnavailable (nothing was
    written), for up to RETRY_SYNC_S after the first failure. Only the outermost of nested
    calls retries, so the waits do not multiply."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if getattr(_retrying, "active", False):
            return call(*args, **kwargs)
        _retrying.active = True
        try:
            deadline, delay = None, _BACKOFF_FIRST_S
            while True:
                try:
                    return call(*args, **kwargs)
                except StoreUnavailable:
                    now = time.monotonic()
                    deadline = deadline or now + RETRY_SYNC_S
                    if now >= deadline:
                        raise
                    time.sleep(delay)
                    delay = min(2 * delay, _BACKOFF_MAX_S)
        finally:
            _retrying.active = False

    return wrapper


@contextmanager
def _translate() -> Iterator[None]:
    """Map driver errors onto StoreError (StoreUnavailable when running the transaction again
    may pass), on one line and with any password masked (drivers may quote the
    connection string); tracker's own errors pass through."""
    try:
        yield
    except exc.DBAPIError as e:
        kind = StoreUnavailable if is_transient(e) else StoreError
        raise kind(f"database error: {one_line(e.orig)}") from e
    except exc.SQLAlchemyError as e:
        kind = StoreUnavailable if is_transient(e) else StoreError
        raise kind(f"database error: {one_line(e)}") from e


def _make_engine(url: str) -> Engine:
    """The engine for ``url``; a URL SQLAlchemy cannot use (a bad port, an unknown or missing
    driver) is a ConfigError naming it, its password masked."""
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return create_engine(url, pool_pre_ping=True)
    except ImportError as e:
        raise BackendUnavailable(
            f"{mask(url)!r} needs the database driver {e.name or e}: pip install it"
        ) from e
    except (exc.ArgumentError, ValueError) as e:
        raise ConfigError(f"{mask(url)!r} is not a usable database URL: {one_line(e)}") from e


def _sqlite_engine(url: str) -> Engine:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    else:
        engine = create_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        record.info["busy_ms"] = int(BUSY_TIMEOUT_S * 1000)
        cur.execute(f"PRAGMA busy_timeout = {record.info['busy_ms']}")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal" and path and path != ":memory:":
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if not options.get("tracker_write", False):
            conn.exec_driver_sql("BEGIN")
            return
        wait = options.get("tracker_wait")
        busy_ms = int((BUSY_TIMEOUT_S if wait is None else wait) * 1000)
        info = conn.connection.info  # lives as long as the DBAPI connection
        if info.get("busy_ms") != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
            info["busy_ms"] = busy_ms
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
