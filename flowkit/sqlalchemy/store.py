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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from flowkit.clock import Clock, epoch_of
from flowkit.exceptions import SchemaMismatch, StoreError
from flowkit.sqlalchemy.connect import (
    Durability,
    SqlitePragmas,
    checked_durability,
    database_of,
    first_line,
    make_engine,
    masked,
    normalize_url,
    now_expression,
    stamp,
    translated,
)
from flowkit.sqlalchemy.group import GroupCommit
from flowkit.sqlalchemy.migrate import upgrade
from flowkit.sqlalchemy.notify import Listener
from flowkit.sqlalchemy.ownership import claim_statement, expired_query, runs_query
from flowkit.sqlalchemy.queues import claim_queued, queued_elsewhere, running
from flowkit.sqlalchemy.sqlite import (
    SharedConnection,
    acknowledge,
    file_key,
    shared_connection,
    sync_wal,
    writer_lock,
)
from flowkit.sqlalchemy.statements import STEP_COLUMNS, Statements, run_from_row
from flowkit.sqlalchemy.tables import SCHEMA_REVISION, VERSION_TABLE, inbox, metadata, runs, steps
from flowkit.sqlalchemy.timers import due_runs, latest_with_prefix
from flowkit.sqlalchemy.writer import CheckpointWriter, keep_signal, park
from flowkit.state import TransactionState
from flowkit.store import Checkpoint, NewRun, Signal, StoredRun, StoredStep
from flowkit.syncscope import SyncScope

__all__ = ["SqlStore"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
_FINISHED = [s.value for s in TransactionState if s.is_finished]


class SqlStore:
    """A durable store on a SQL database.

    Args:
        url: A SQLAlchemy URL: `sqlite:///flowkit.db` or
            `postgresql+psycopg://user@host/db` (`postgresql://` means psycopg 3 too).
        synchronous: SQLite's `synchronous` pragma (default `FULL`; `NORMAL` with
            acknowledged durability).
        durability: `"full"` (default): every commit is made durable before it returns.
            `"acknowledged"` (SQLite in WAL mode): checkpoints commit without their own fsync
            and the WAL is synced once before anything is acknowledged to the caller (a run
            returns, a signal, recovery or cancel call returns, a worker reports a run
            finished, `enqueue` returns); see the README's "Durable runs".
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
        synchronous: Synchronous | None = None,
        durability: Durability = "full",
        journal_mode: str = "WAL",
        busy_timeout: float = 30.0,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # SQLite: shared with every writer of the file in this process; elsewhere a private no-op
        self._write_lock = (
            writer_lock(database_of(self.url)) if self.is_sqlite else threading.RLock()
        )
        self.durability = checked_durability(durability, self.url, journal_mode, synchronous)
        acknowledged = durability == "acknowledged"
        synchronous = synchronous or ("NORMAL" if acknowledged else "FULL")
        self.synchronous = synchronous
        self.journal_mode = journal_mode
        self._database = database_of(self.url) if self.is_sqlite else ""
        fsyncs_each_commit = synchronous in ("FULL", "EXTRA") and journal_mode.upper() == "WAL"
        self.syncs_each_commit = fsyncs_each_commit
        """True when every commit here is durable when it returns (FULL, in WAL mode)."""
        self.sync_key: str | None = (
            file_key(self._database)
            if self.is_sqlite and (fsyncs_each_commit or acknowledged)
            else None
        )
        """Names the file whose fsync runs of this store may take over (see
        `flowkit.syncscope`): a SQLite file in WAL mode that fsyncs every commit, or whose
        durability is acknowledged."""
        pragmas = SqlitePragmas(journal_mode, synchronous, busy_timeout) if self.is_sqlite else None
        options = dict(engine_options or {})
        self.engine = make_engine(self.url, options, pragmas, self._write_lock, immediate=True)
        self._read_engine = (
            make_engine(self.url, options, pragmas, None, immediate=False)
            if self.is_sqlite
            else self.engine
        )
        self._database_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            self.engine.dialect.loaded_dbapi.Error,
        )
        self._ping()
        self._clock: Clock | None = None
        self._now = now_expression(self.is_sqlite)
        self._sql = Statements(self.engine, self._now, is_sqlite=self.is_sqlite)
        self._writer = CheckpointWriter(
            self.engine,
            self._sql,
            is_sqlite=self.is_sqlite,
            write_lock=self._write_lock,
            shared=self._shared_connection(busy_timeout),
        )
        self._group = GroupCommit(self._writer.write_batch)
        self._schema_checked = False

    def _shared_connection(self, busy_timeout: float) -> tuple[SharedConnection, str] | None:
        """The file's shared writer connection (SQLite on disk in WAL mode), with the
        `synchronous` checkpoints commit with; None elsewhere."""
        key = file_key(self._database) if self.is_sqlite else None
        if key is None or self.journal_mode.upper() != "WAL" or "?" in self.url:
            return None  # in memory, another journal, or connect options of the URL's own
        return shared_connection(key, busy_timeout), self.synchronous

    # --- setup ------------------------------------------------------------------------------

    def _ping(self) -> None:
        try:
            with self._read_engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            self.close()
            raise StoreError(
                f"cannot open database {masked(self.url)}: {first_line(exc)}"
            ) from None

    @translated
    def create_all(self) -> None:
        """Create flowkit's tables (for quick starts; deployments run the migrations)."""
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            stamp(conn)
        self._schema_checked = True

    def upgrade(self) -> None:
        """Bring the schema to this version with the shipped Alembic migrations."""
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

    @translated
    def start_run(self, new: NewRun) -> StoredRun | None:
        if self._group.submit(new):
            self._committed()
            return None
        found = self.get_run(new.transaction_id)
        assert found is not None
        return found

    @translated
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
            return run_from_row(row), [StoredStep(*r) for r in rows]

    @translated
    def get_run(self, transaction_id: str) -> StoredRun | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.transaction_id == transaction_id)).first()
        return None if row is None else run_from_row(row)

    @translated
    def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        limit: int = 100,
        version: int | None = None,
    ) -> list[StoredRun]:
        query = runs_query(status, workflow, since, limit, version)
        with self._read_engine.connect() as conn:
            return [run_from_row(r) for r in conn.execute(query)]

    @translated
    def purge(self, before: float) -> int:
        doomed = select(runs.c.transaction_id).where(
            runs.c.status.in_(_FINISHED), runs.c.updated_at < before
        )
        with self.engine.begin() as conn:
            conn.execute(delete(steps).where(steps.c.transaction_id.in_(doomed)))
            conn.execute(delete(inbox).where(inbox.c.transaction_id.in_(doomed)))
            return int(conn.execute(delete(runs).where(runs.c.transaction_id.in_(doomed))).rowcount)

    # --- ownership --------------------------------------------------------------------------

    @translated
    def claim(
        self, transaction_id: str, owner: str, lease_seconds: float, statuses: Iterable[str]
    ) -> StoredRun | None:
        claim = claim_statement(transaction_id, owner, lease_seconds, statuses, self._now)
        with self.engine.begin() as conn:
            row = conn.execute(claim).first()
        return None if row is None else run_from_row(row)

    @translated
    def renew(self, owner: str, transaction_ids: Sequence[str], lease_seconds: float) -> None:
        if not transaction_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.owner == owner, runs.c.transaction_id.in_(list(transaction_ids)))
                .values(lease_expires_at=self._now + lease_seconds)
            )

    @translated
    def expired(self, limit: int = 100) -> list[StoredRun]:
        with self._read_engine.connect() as conn:
            return [run_from_row(r) for r in conn.execute(expired_query(limit, self._now))]

    @translated
    def expire_lease(self, transaction_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.transaction_id == transaction_id)
                .values(lease_expires_at=self._now - 1.0)
            )

    def use_clock(self, clock: Clock) -> None:
        """See `Store.use_clock`: leases, times and purges read `clock`, not the database."""
        if self._clock is clock:
            return
        if self._clock is not None:
            raise StoreError(f"{self!r} already reads another engine's clock")
        self._clock = clock
        value = functools.partial(epoch_of, clock)
        self._now = now_expression(self.is_sqlite, value)
        self._sql = Statements(self.engine, self._now, is_sqlite=self.is_sqlite, now_value=value)
        self._writer.use(self._sql)

    @translated
    def now(self) -> float:
        with self._read_engine.connect() as conn:
            return float(conn.execute(select(self._now)).scalar_one())

    # --- queues -----------------------------------------------------------------------------

    @translated
    def claim_queued(
        self, queue: str, owner: str, lease_seconds: float, workflows: Sequence[str],
        limit: int, concurrency: int | None = None, fingerprints: Sequence[str] | None = None,
        now: float | None = None,
    ) -> list[StoredRun]:  # fmt: skip
        with self.engine.begin() as conn:
            if concurrency is not None:
                limit = min(limit, concurrency - running(conn, queue, self._now, self.is_sqlite))
            if limit <= 0 or not workflows:
                return []
            claim = claim_queued(
                queue, owner, lease_seconds, workflows, limit, self._now, self.is_sqlite,
                fingerprints, now,
            )  # fmt: skip
            return [run_from_row(r) for r in conn.execute(claim)]

    @translated
    def due(self, now: float, workflows: Sequence[str], limit: int) -> list[StoredRun]:
        """Waiting runs due at `now` (see `Store.due`), the earliest first."""
        with self._read_engine.connect() as conn:
            found = conn.execute(due_runs(now, workflows, limit, self._now))
            return [run_from_row(r) for r in found]

    @translated
    def latest_scheduled(self, prefix: str) -> str | None:
        """The greatest transaction id starting with `prefix` (see `Store.latest_scheduled`)."""
        with self._read_engine.connect() as conn:
            found = conn.execute(latest_with_prefix(prefix)).scalar()
            return None if found is None else str(found)

    @translated
    def queued_elsewhere(
        self, queue: str, workflows: Sequence[str], fingerprints: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Queued runs left for other workers (see `Store.queued_elsewhere`), by workflow."""
        with self._read_engine.connect() as conn:
            found = conn.execute(queued_elsewhere(queue, workflows, fingerprints))
            return {n: int(count) for n, count in found}

    def listen(self, on_notify: Callable[[str], None]) -> Any:
        """A `Listener` calling `on_notify(queue)` when runs are queued (PostgreSQL), or None."""
        if self.is_sqlite:
            return None
        return Listener(self.url, on_notify)

    # --- signals ----------------------------------------------------------------------------

    @translated
    def put_signal(self, transaction_id: str, signal: Signal) -> str:
        with self.engine.begin() as conn:
            outcome = keep_signal(conn, transaction_id, signal)
        if outcome == "stored":
            self._committed()  # the caller is told it is kept: acknowledged
        return outcome

    @translated
    def write(self, checkpoint: Checkpoint, session: Any = None) -> None:
        if session is not None:
            self._writer.write_in_session(checkpoint, session)
        elif checkpoint.take_signals:
            with self.engine.begin() as conn:
                park(conn, checkpoint, self._sql)
        else:
            self._group.submit(checkpoint)
        self._committed()

    def _committed(self) -> None:
        if self.durability == "acknowledged":
            acknowledge(self.sync_key, self.sync_key or self._database, sync_wal)

    def sync_scope(self) -> SyncScope | None:
        """A scope in which writers of this store's file may leave their fsync to the run's
        next checkpoint (`flowkit.syncscope`); None unless every commit here fsyncs the file."""
        if self.sync_key is None:
            return None
        key = self.sync_key
        return SyncScope(key, lambda: sync_wal(key))

    def open_session(self) -> Session:
        """A SQLAlchemy session on this database (its transaction begins IMMEDIATE on SQLite)."""
        return Session(self.engine, expire_on_commit=False)

    @property
    def group_stats(self) -> tuple[int, int]:
        """(commits, checkpoints) written through group commit so far."""
        return self._group.batches, self._group.items

    def close(self) -> None:
        """Release every connection."""
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
        for engine in {getattr(self, "engine", None), getattr(self, "_read_engine", None)}:
            if engine is not None:
                engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlStore({masked(self.url)!r})"


def _locked(query: Any) -> Any:
    return query.with_for_update()
