"""`SqlStore`: durable runs on SQLite (the embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with `synchronous=FULL` unless told otherwise: every acknowledged
checkpoint survives a power cut. `NORMAL` is several times faster per commit and only loses the
last transactions on a power cut (never on a process crash): a reasonable choice for workloads
whose steps are idempotent anyway. Write transactions begin IMMEDIATE, so two writers never
deadlock on a lock upgrade. PostgreSQL leases use the database's clock.

The hot path (a step's checkpoint) runs precompiled SQL on one dedicated connection, batched
across concurrent runs by `GroupCommit`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import (
    Double,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from flowkit.exceptions import LeaseLost, SchemaMismatch, StoreError
from flowkit.sqlalchemy.group import Entry, GroupCommit
from flowkit.sqlalchemy.sqlite import file_key, sync_wal, writer_lock
from flowkit.sqlalchemy.statements import STEP_COLUMNS, Statements, start_values, step_values
from flowkit.sqlalchemy.tables import SCHEMA_REVISION, VERSION_TABLE, inbox, metadata, runs, steps
from flowkit.state import TransactionState
from flowkit.store import (
    ACTIVE,
    Checkpoint,
    NewRun,
    Signal,
    StoredRun,
    StoredStep,
)
from flowkit.syncscope import SyncScope

__all__ = ["SqlStore"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
F = TypeVar("F", bound=Callable[..., Any])
_FINISHED = [s.value for s in TransactionState if s.is_finished]


def _translated(method: F) -> F:
    """Turn a database error raised by a store method into `StoreError` (its cause kept)."""

    @functools.wraps(method)
    def translated(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self._database_errors as exc:
            raise StoreError(
                f"{method.__name__} failed on {_masked(self.url)}: {_first_line(exc)}"
            ) from exc

    return cast(F, translated)


class SqlStore:
    """A durable store on a SQL database.

    Args:
        url: A SQLAlchemy URL: `sqlite:///flowkit.db` or
            `postgresql+psycopg://user@host/db` (`postgresql://` means psycopg 3 too).
        synchronous: SQLite's `synchronous` pragma (default `FULL`).
        journal_mode: SQLite's journal mode (default `WAL`).
        busy_timeout: Seconds a SQLite writer waits for the lock.
        engine_options: Extra keyword arguments for `sqlalchemy.create_engine`.

    Raises:
        StoreError: the URL is malformed, its driver is missing, or the database cannot be
            reached (the message hides the password).
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        synchronous: Synchronous = "FULL",
        journal_mode: str = "WAL",
        busy_timeout: float = 30.0,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = _normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # SQLite: shared with every writer of the file in this process; elsewhere a private no-op
        self._write_lock = (
            writer_lock(_database_of(self.url)) if self.is_sqlite else threading.RLock()
        )
        self.synchronous = synchronous
        self.journal_mode = journal_mode
        self._database = _database_of(self.url) if self.is_sqlite else ""
        fsyncs_each_commit = synchronous in ("FULL", "EXTRA") and journal_mode.upper() == "WAL"
        self.sync_key: str | None = (
            file_key(self._database) if self.is_sqlite and fsyncs_each_commit else None
        )
        """Names the file whose fsync runs of this store may take over (see
        `flowkit.syncscope`): set on a SQLite file in WAL mode that fsyncs every commit."""
        self._busy_timeout = busy_timeout
        options = dict(engine_options or {})
        self.engine = self._make_engine(options, immediate=True)
        self._read_engine = (
            self._make_engine(options, immediate=False) if self.is_sqlite else self.engine
        )
        self._database_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            self.engine.dialect.loaded_dbapi.Error,
        )
        self._ping()
        self._now = _now_expression(self.is_sqlite)
        self._sql = Statements(self.engine, self._now, is_sqlite=self.is_sqlite)
        self._writer_conn: Any = None
        self._writer_lock = threading.Lock()
        self._group = GroupCommit(self._write_batch)
        self._schema_checked = False

    # --- setup ------------------------------------------------------------------------------

    def _make_engine(self, options: dict[str, Any], *, immediate: bool) -> Engine:
        try:
            if self.is_sqlite:
                connect_args = {"check_same_thread": False, "timeout": self._busy_timeout}
                engine = create_engine(self.url, connect_args=connect_args, **options)
                _sqlite_events(engine, self, immediate=immediate)
            else:
                engine = create_engine(self.url, pool_pre_ping=True, **options)
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot use database URL {_masked(self.url)}: {exc}") from None
        return engine

    def _ping(self) -> None:
        try:
            with self._read_engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            self.close()
            raise StoreError(
                f"cannot open database {_masked(self.url)}: {_first_line(exc)}"
            ) from None

    @_translated
    def create_all(self) -> None:
        """Create flowkit's tables (for quick starts; deployments run the migrations)."""
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            _stamp(conn)
        self._schema_checked = True

    def upgrade(self) -> None:
        """Bring the schema to this version with the shipped Alembic migrations."""
        from flowkit.sqlalchemy.migrate import upgrade

        upgrade(self.engine)
        self._schema_checked = True

    def check(self) -> None:
        """Check the schema is flowkit's, at this version.

        Raises:
            SchemaMismatch: no flowkit schema, or one of another revision.
        """
        if self._schema_checked:
            return
        try:
            with self._read_engine.connect() as conn:
                found = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        except DBAPIError:
            raise SchemaMismatch(None, SCHEMA_REVISION) from None
        if found != SCHEMA_REVISION:
            raise SchemaMismatch(found, SCHEMA_REVISION)
        self._schema_checked = True

    # --- runs -------------------------------------------------------------------------------

    @_translated
    def start_run(self, new: NewRun) -> StoredRun | None:
        if self._group.submit(new):
            return None
        found = self.get_run(new.transaction_id)
        assert found is not None
        return found

    @_translated
    def load(self, transaction_id: str) -> tuple[StoredRun, list[StoredStep]] | None:
        with self._read_engine.begin() as conn:
            row = conn.execute(select(runs).where(runs.c.transaction_id == transaction_id)).first()
            if row is None:
                return None
            rows = conn.execute(
                select(*(steps.c[c] for c in STEP_COLUMNS[1:]))
                .where(steps.c.transaction_id == transaction_id)
                .order_by(steps.c.id)
            )
            return _run_from_row(row), [StoredStep(*r) for r in rows]

    @_translated
    def get_run(self, transaction_id: str) -> StoredRun | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.transaction_id == transaction_id)).first()
        return None if row is None else _run_from_row(row)

    @_translated
    def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[StoredRun]:
        query = select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(runs.c.status == status)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        with self._read_engine.connect() as conn:
            return [_run_from_row(r) for r in conn.execute(query)]

    @_translated
    def purge(self, before: float) -> int:
        doomed = select(runs.c.transaction_id).where(
            runs.c.status.in_(_FINISHED), runs.c.updated_at < before
        )
        with self.engine.begin() as conn:
            conn.execute(delete(steps).where(steps.c.transaction_id.in_(doomed)))
            conn.execute(delete(inbox).where(inbox.c.transaction_id.in_(doomed)))
            return int(conn.execute(delete(runs).where(runs.c.transaction_id.in_(doomed))).rowcount)

    # --- ownership --------------------------------------------------------------------------

    @_translated
    def claim(
        self, transaction_id: str, owner: str, lease_seconds: float, statuses: Iterable[str]
    ) -> StoredRun | None:
        claim = (
            update(runs)
            .where(
                runs.c.transaction_id == transaction_id,
                runs.c.status.in_([str(s) for s in statuses]),
                or_(runs.c.owner.is_(None), runs.c.lease_expires_at < self._now),
            )
            .values(owner=owner, lease_expires_at=self._now + lease_seconds, updated_at=self._now)
            .returning(*runs.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(claim).first()
        return None if row is None else _run_from_row(row)

    @_translated
    def renew(self, owner: str, transaction_ids: Sequence[str], lease_seconds: float) -> None:
        if not transaction_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.owner == owner, runs.c.transaction_id.in_(list(transaction_ids)))
                .values(lease_expires_at=self._now + lease_seconds)
            )

    @_translated
    def expired(self, limit: int = 100) -> list[StoredRun]:
        query = (
            select(runs)
            .where(
                runs.c.status.in_([s.value for s in ACTIVE]),
                or_(runs.c.owner.is_(None), runs.c.lease_expires_at < self._now),
            )
            .order_by(runs.c.created_at)
            .limit(limit)
        )
        with self._read_engine.connect() as conn:
            return [_run_from_row(r) for r in conn.execute(query)]

    @_translated
    def expire_lease(self, transaction_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.transaction_id == transaction_id)
                .values(lease_expires_at=self._now - 1.0)
            )

    @_translated
    def now(self) -> float:
        with self._read_engine.connect() as conn:
            return float(conn.execute(select(self._now)).scalar_one())

    # --- queues -----------------------------------------------------------------------------

    @_translated
    def claim_queued(
        self,
        queue: str,
        owner: str,
        lease_seconds: float,
        workflows: Sequence[str],
        limit: int,
        concurrency: int | None = None,
    ) -> list[StoredRun]:
        with self.engine.begin() as conn:
            if concurrency is not None:
                limit = min(limit, concurrency - self._running(conn, queue))
            if limit <= 0 or not workflows:
                return []
            pick = (
                select(runs.c.transaction_id)
                .where(
                    runs.c.queue == queue,
                    runs.c.status == TransactionState.QUEUED.value,
                    runs.c.owner.is_(None),
                    runs.c.workflow.in_(list(workflows)),
                )
                .order_by(runs.c.created_at)
                .limit(limit)
            )
            if not self.is_sqlite:  # SQLite serializes writers; PostgreSQL skips taken rows
                pick = pick.with_for_update(skip_locked=True)
            claim = (
                update(runs)
                .where(runs.c.transaction_id.in_(pick.scalar_subquery()))
                .values(
                    status=TransactionState.INVOKING.value,
                    owner=owner,
                    lease_expires_at=self._now + lease_seconds,
                    updated_at=self._now,
                )
                .returning(*runs.c)
            )
            return [_run_from_row(r) for r in conn.execute(claim)]

    def _running(self, conn: Any, queue: str) -> int:
        """Runs of `queue` executing now, counted under a per-queue lock (PostgreSQL)."""
        if not self.is_sqlite:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"flowkit:{queue}"))))
        live = conn.execute(
            select(func.count())
            .select_from(runs)
            .where(
                runs.c.queue == queue,
                runs.c.status.in_([s.value for s in ACTIVE]),
                runs.c.owner.is_not(None),
                runs.c.lease_expires_at > self._now,
            )
        )
        return int(live.scalar_one())

    @_translated
    def queued_elsewhere(self, queue: str, workflows: Sequence[str]) -> dict[str, int]:
        """Queued runs of workflows not in `workflows`, by workflow (left for other workers)."""
        query = (
            select(runs.c.workflow, func.count())
            .where(
                runs.c.queue == queue,
                runs.c.status == TransactionState.QUEUED.value,
                runs.c.workflow.not_in(list(workflows)),
            )
            .group_by(runs.c.workflow)
        )
        with self._read_engine.connect() as conn:
            return {name: int(count) for name, count in conn.execute(query)}

    def listen(self, on_notify: Callable[[str], None]) -> Any:
        """A `Listener` calling `on_notify(queue)` when runs are queued (PostgreSQL), or None."""
        if self.is_sqlite:
            return None
        from flowkit.sqlalchemy.notify import Listener

        return Listener(self.url, on_notify)

    # --- signals ----------------------------------------------------------------------------

    @_translated
    def put_signal(self, transaction_id: str, signal: Signal) -> str:
        with self.engine.begin() as conn:
            status = conn.execute(
                _locked(select(runs.c.status).where(runs.c.transaction_id == transaction_id))
            ).scalar()
            exists = conn.execute(
                select(inbox.c.kind).where(
                    inbox.c.transaction_id == transaction_id, inbox.c.step == signal.step
                )
            ).first()
            if exists is not None:
                return "duplicate"
            if status == TransactionState.WAITING:
                return "waiting"
            conn.execute(
                insert(inbox).values(
                    transaction_id=transaction_id,
                    step=signal.step,
                    kind=signal.kind,
                    payload=signal.payload,
                    created_at=time.time(),
                )
            )
        return "stored"

    @_translated
    def write(self, checkpoint: Checkpoint, session: Any = None) -> None:
        if session is not None:
            self._write_in_session(checkpoint, session)
        elif checkpoint.take_signals:
            with self.engine.begin() as conn:
                _park(conn, checkpoint, self._sql)
        else:
            self._group.submit(checkpoint)

    def _write_in_session(self, checkpoint: Checkpoint, session: Session) -> None:
        sql = self._sql
        try:
            result = session.execute(sql.update_stmt, sql.run_update(checkpoint))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(checkpoint.transaction_id)
            if checkpoint.steps:
                rows = [step_values(checkpoint, s) for s in checkpoint.steps]
                session.execute(insert(steps), [{c: r[c] for c in STEP_COLUMNS} for r in rows])
            session.commit()
        except BaseException:
            session.rollback()
            raise

    def _write_batch(self, entries: Sequence[Entry]) -> None:
        with self._writer_lock, self._write_lock:
            conn = self._writer()
            if self._single_statement(entries):
                self._autocommit(conn, entries[0])
                return
            try:
                self._execute_batch(conn, entries)
                conn.commit()
            except BaseException as exc:
                self._writer_failed(conn)
                if len(entries) > 1 and isinstance(exc, Exception):
                    self._one_by_one(entries)  # isolate the entry that broke the batch
                    return
                raise

    def _single_statement(self, entries: Sequence[Entry]) -> bool:
        """One SQLite checkpoint that is one statement: it is atomic on its own."""
        if not self.is_sqlite or len(entries) != 1:
            return False
        item = entries[0].item
        return isinstance(item, Checkpoint) and item.run is None and len(item.steps) == 1

    def _autocommit(self, conn: Any, entry: Entry) -> None:
        """Run the fenced insert of one step row as its own transaction (no BEGIN/COMMIT)."""
        checkpoint: Checkpoint = entry.item
        fenced = self._sql.fenced_insert_step
        assert fenced is not None
        cursor = conn.cursor()
        try:
            cursor.execute(fenced.text, fenced.params(step_values(checkpoint, checkpoint.steps[0])))
            if cursor.rowcount != 1:
                entry.error = LeaseLost(checkpoint.transaction_id)
        except Exception:
            self._writer_failed(conn)
            raise
        finally:
            cursor.close()

    def _one_by_one(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            conn = self._writer()
            try:
                self._execute_batch(conn, [entry])
                conn.commit()
            except Exception as exc:
                self._writer_failed(conn)
                entry.error = exc

    def _execute_batch(self, conn: Any, entries: Sequence[Entry]) -> None:
        cursor = conn.cursor()
        if self.is_sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        for entry in entries:
            item = entry.item
            if isinstance(item, NewRun):
                cursor.execute(self._sql.start.text, self._sql.start.params(start_values(item)))
                entry.result = cursor.rowcount == 1
                if entry.result and item.queue is not None and self._sql.notify is not None:
                    cursor.execute(
                        self._sql.notify.text, self._sql.notify.params({"q": item.queue})
                    )
            else:
                self._execute_checkpoint(cursor, entry, item)
        cursor.close()

    def _execute_checkpoint(self, cursor: Any, entry: Entry, checkpoint: Checkpoint) -> None:
        sql = self._sql
        fenced = sql.fenced_insert_step
        if checkpoint.run is None and fenced is not None and len(checkpoint.steps) == 1:
            # SQLite serializes writers: the fence can ride on the insert itself
            cursor.execute(fenced.text, fenced.params(step_values(checkpoint, checkpoint.steps[0])))
            if cursor.rowcount != 1:
                entry.error = LeaseLost(checkpoint.transaction_id)
        else:
            cursor.execute(sql.update.text, sql.update.params(sql.run_update(checkpoint)))
            if cursor.rowcount != 1:
                entry.error = LeaseLost(checkpoint.transaction_id)
                return
            if checkpoint.steps:
                cursor.executemany(
                    sql.insert_step.text,
                    [sql.insert_step.params(step_values(checkpoint, s)) for s in checkpoint.steps],
                )

    def _writer(self) -> Any:
        if self._writer_conn is None:
            self._writer_conn = self.engine.raw_connection()
        return self._writer_conn

    def _writer_failed(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:  # a broken connection: drop it, the next batch reconnects
            self._drop_writer()

    def _drop_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:
                conn.close()

    def sync_scope(self) -> SyncScope | None:
        """A scope in which writers of this store's file may leave their fsync to the run's
        next checkpoint (`flowkit.syncscope`); None unless every commit here fsyncs the file."""
        if self.sync_key is None:
            return None
        database = self._database
        return SyncScope(self.sync_key, lambda: sync_wal(database))

    def open_session(self) -> Session:
        """A SQLAlchemy session on this database (its transaction begins IMMEDIATE on SQLite)."""
        return Session(self.engine, expire_on_commit=False)

    @property
    def group_stats(self) -> tuple[int, int]:
        """(commits, checkpoints) written through group commit so far."""
        return self._group.batches, self._group.items

    def close(self) -> None:
        """Release every connection."""
        with getattr(self, "_writer_lock", threading.Lock()):
            if getattr(self, "_writer_conn", None) is not None:
                self._writer_conn.close()
                self._writer_conn = None
        for engine in {getattr(self, "engine", None), getattr(self, "_read_engine", None)}:
            if engine is not None:
                engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlStore({_masked(self.url)!r})"


def _park(conn: Any, checkpoint: Checkpoint, sql: Statements) -> None:
    """Park a waiting run, unless signals for its waiting steps are already kept: take them."""
    fence = sql.run_update(Checkpoint(checkpoint.transaction_id, checkpoint.owner))
    if conn.execute(sql.update_stmt, fence).rowcount != 1:  # locks the run row
        raise LeaseLost(checkpoint.transaction_id)
    tx = checkpoint.transaction_id
    kept = conn.execute(
        select(inbox.c.step, inbox.c.kind, inbox.c.payload).where(
            inbox.c.transaction_id == tx, inbox.c.step.in_(list(checkpoint.take_signals))
        )
    ).all()
    if kept:
        conn.execute(
            delete(inbox).where(
                inbox.c.transaction_id == tx, inbox.c.step.in_([r.step for r in kept])
            )
        )
        checkpoint.taken.extend(Signal(r.step, r.kind, r.payload) for r in kept)
        return
    conn.execute(sql.update_stmt, sql.run_update(checkpoint))


def _locked(query: Any) -> Any:
    return query.with_for_update()


def _run_from_row(row: Any) -> StoredRun:
    return StoredRun(
        transaction_id=row.transaction_id,
        workflow=row.workflow,
        status=row.status,
        input=row.input,
        output=row.output,
        errors=row.errors,
        owner=row.owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deadline=row.deadline,
        recoveries=row.recoveries,
        recovery_step=row.recovery_step,
        queue=row.queue,
        event_group_id=row.event_group_id,
    )


def _stamp(conn: Any) -> None:
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    found = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    if found is None:
        conn.exec_driver_sql(
            f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{SCHEMA_REVISION}')"
        )


def _now_expression(sqlite: bool) -> ColumnElement[Any]:
    if sqlite:
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Double)
    return literal_column("extract(epoch from clock_timestamp())", Double)


def _sqlite_events(engine: Engine, store: SqlStore, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def configure(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA journal_mode={store.journal_mode}")
        cursor.execute(f"PRAGMA synchronous={store.synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(store._busy_timeout * 1000)}")
        cursor.close()

    if not immediate:

        @event.listens_for(engine, "begin")
        def begin_read(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return
    lock = store._write_lock

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        lock.acquire()  # queue behind this process's other writers, not in SQLite's busy sleep
        conn.info[_HOLDS_LOCK] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "checkin")
    def checkin(dbapi_conn: Any, record: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_LOCK, False):
            lock.release()


_HOLDS_LOCK = "flowkit_writer_lock"


def _normalize_url(url: str) -> str:
    if not isinstance(url, str) or not url:
        raise StoreError(f"a database URL is a non-empty string, not {url!r}")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _database_of(url: str) -> str:
    try:
        return make_url(url).database or ""
    except ArgumentError:
        return ""


def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
