"""Writing checkpoints: group-committed batches on one dedicated connection, or a step's session.

On a SQLite file in WAL mode the dedicated connection is the file's `SharedConnection`, which
the payment module writes through too.

The hot path of a durable run. A batch is one transaction for the checkpoints of concurrent
runs; an entry that breaks it is isolated by replaying the batch one entry at a time. Each
checkpoint is fenced on its run's owner: a lost lease is `LeaseLost`, never a write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

from flowkit.exceptions import LeaseLost
from flowkit.sqlalchemy.group import Entry
from flowkit.sqlalchemy.sqlite import SharedConnection
from flowkit.sqlalchemy.statements import STEP_COLUMNS, Statements, start_values, step_values
from flowkit.sqlalchemy.tables import inbox, runs, steps
from flowkit.state import TransactionState
from flowkit.store import Checkpoint, NewRun, Signal

__all__ = ["CheckpointWriter", "keep_signal", "park"]


class CheckpointWriter:
    """Writes checkpoints for a `SqlStore` (see the module docstring).

    Args:
        engine: The store's write engine.
        sql: Its precompiled statements.
        is_sqlite: True on SQLite (BEGIN IMMEDIATE, single-statement autocommit).
        write_lock: The lock every writer of the database file in this process shares.
        shared: The file's shared connection, to write through instead of one of `engine`'s
            (its `lock` is `write_lock`), and the `synchronous` to commit with there.
    """

    def __init__(
        self,
        engine: Engine,
        sql: Statements,
        *,
        is_sqlite: bool,
        write_lock: Any,
        shared: tuple[SharedConnection, str] | None = None,
    ) -> None:
        self.engine = engine
        self.is_sqlite = is_sqlite
        self._sql = sql
        self._write_lock = write_lock
        self._shared = shared
        self._writer_conn: Any = None
        self._writer_lock = threading.Lock()

    def use(self, sql: Statements) -> None:
        """Write with `sql` from now on (the store's statements, rebuilt for a new clock)."""
        with self._writer_lock:
            self._sql = sql

    def write_in_session(self, checkpoint: Checkpoint, session: Session) -> None:
        """Write a checkpoint in a step's own session, committing the step's writes with it."""
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

    def write_batch(self, entries: Sequence[Entry]) -> None:
        """Write a group commit's entries in one transaction (the `GroupCommit` callback)."""
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
                values = start_values(item)
                values["p_now"] = self._sql.now_value()
                cursor.execute(self._sql.start.text, self._sql.start.params(values))
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
        if self._shared is not None:
            shared, synchronous = self._shared
            return shared.connection(synchronous)
        if self._writer_conn is None:
            self._writer_conn = self.engine.raw_connection()
        return self._writer_conn

    def _writer_failed(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:  # a broken connection: drop it, the next batch reconnects
            self._drop_writer()

    def _drop_writer(self) -> None:
        if self._shared is not None:
            self._shared[0].discard()
            return
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:
                conn.close()

    def close(self) -> None:
        """Close the dedicated connection (or let go of the shared one)."""
        with self._writer_lock:
            shared, self._shared = self._shared, None
            if shared is not None:
                shared[0].detach()
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None


def keep_signal(conn: Any, transaction_id: str, signal: Signal) -> str:
    """Keep a signal in the inbox unless one is kept already or the run is parked now (see
    `Store.put_signal`); locks the run row first (PostgreSQL)."""
    status = conn.execute(
        select(runs.c.status).where(runs.c.transaction_id == transaction_id).with_for_update()
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


def park(conn: Any, checkpoint: Checkpoint, sql: Statements) -> None:
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
