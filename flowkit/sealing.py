"""`SealedStore`: the one seam where stored values are encrypted, between the codec and a store.

It wraps any `Store`: the value fields of what goes in (a new run's input; the output,
compensate input and error of step rows; a run change's output and errors; signal payloads)
are sealed by an `Encryption`, and the same fields of what comes back are opened. Ids, names,
statuses, owners, leases and times pass in clear: they are what lists, claims and leases query.
So does a run's empty error list (``[]``), a constant that says no more than its status.
Anything else the wrapped store offers (`create_all`, a SQL engine...) is reached through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

from attrs import evolve, fields

from flowkit.clock import Clock
from flowkit.encryption import Encryption
from flowkit.store import Checkpoint, NewRun, RunUpdate, Signal, Store, StoredRun, StoredStep
from flowkit.syncscope import SyncScope

__all__ = ["SealedStore"]

# Every checkpoint passes a step row through here: it is rebuilt from its fields in order, the
# three values sealed, rather than by `attrs.evolve` (which walks the class's fields per call).
_STEP_FIELDS = [f.name for f in fields(StoredStep)]
_step_fields = attrgetter(*_STEP_FIELDS)
_OUTPUT = _STEP_FIELDS.index("output")
_COMPENSATE_INPUT = _STEP_FIELDS.index("compensate_input")
_ERROR = _STEP_FIELDS.index("error")
_NO_ERRORS = "[]"  # how the codec writes a run's errors when there are none


class SealedStore:
    """A `Store` that keeps every value encrypted in the store it wraps.

    Args:
        inner: The store rows are kept in.
        encryption: The keys values are sealed and opened with.
    """

    def __init__(self, inner: Store, encryption: Encryption) -> None:
        self.inner = inner
        self.encryption = encryption
        self.durable = inner.durable
        self.sync_key = inner.sync_key
        self.syncs_each_commit = inner.syncs_each_commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # --- values in and out ------------------------------------------------------------------

    def _seal(self, text: str | None) -> str | None:
        return None if text is None else self.encryption.seal(text)

    def _open(self, text: str | None) -> str | None:
        return None if text is None else self.encryption.open(text)

    def _open_run(self, row: StoredRun | None) -> StoredRun | None:
        if row is None:
            return None
        open_ = self.encryption.open
        return evolve(
            row,
            input=open_(row.input),
            output=self._open(row.output),
            errors=open_(row.errors),
        )

    def _open_runs(self, rows: list[StoredRun]) -> list[StoredRun]:
        return [r for r in map(self._open_run, rows) if r is not None]

    def _seal_step(self, row: StoredStep) -> StoredStep:
        values = list(_step_fields(row))
        output = self._seal(row.output)
        values[_OUTPUT] = output
        same = row.compensate_input is row.output  # a return value that is both: one blob
        values[_COMPENSATE_INPUT] = output if same else self._seal(row.compensate_input)
        values[_ERROR] = self._seal(row.error)
        return StoredStep(*values)

    def _open_step(self, row: StoredStep) -> StoredStep:
        return evolve(
            row,
            output=self._open(row.output),
            compensate_input=self._open(row.compensate_input),
            error=self._open(row.error),
        )

    def _seal_update(self, update: RunUpdate | None) -> RunUpdate | None:
        if update is None or (update.output is None and update.errors is None):
            return update
        errors = update.errors
        if errors != _NO_ERRORS:  # an empty list says nothing the run's status does not
            errors = self._seal(errors)
        return evolve(update, output=self._seal(update.output), errors=errors)

    # --- the Store protocol -----------------------------------------------------------------

    def start_run(self, new: NewRun) -> StoredRun | None:
        """See `Store.start_run` (the input is sealed; an existing row comes back opened)."""
        return self._open_run(
            self.inner.start_run(evolve(new, input=self.encryption.seal(new.input)))
        )

    def load(self, transaction_id: str) -> tuple[StoredRun, list[StoredStep]] | None:
        """See `Store.load` (values opened)."""
        loaded = self.inner.load(transaction_id)
        if loaded is None:
            return None
        run = self._open_run(loaded[0])
        assert run is not None
        return run, [self._open_step(s) for s in loaded[1]]

    def get_run(self, transaction_id: str) -> StoredRun | None:
        """See `Store.get_run` (values opened)."""
        return self._open_run(self.inner.get_run(transaction_id))

    def write(self, checkpoint: Checkpoint, session: Any = None) -> None:
        """See `Store.write` (values sealed; signals taken come back opened)."""
        sealed = Checkpoint(
            checkpoint.transaction_id,
            checkpoint.owner,
            [self._seal_step(s) for s in checkpoint.steps],
            self._seal_update(checkpoint.run),
            checkpoint.take_signals,
        )
        self.inner.write(sealed, session)
        if sealed.taken:
            open_ = self.encryption.open
            checkpoint.taken.extend(evolve(s, payload=open_(s.payload)) for s in sealed.taken)

    def claim(
        self, transaction_id: str, owner: str, lease_seconds: float, statuses: Iterable[str]
    ) -> StoredRun | None:
        """See `Store.claim` (values opened)."""
        return self._open_run(self.inner.claim(transaction_id, owner, lease_seconds, statuses))

    def renew(self, owner: str, transaction_ids: Sequence[str], lease_seconds: float) -> None:
        """See `Store.renew`."""
        self.inner.renew(owner, transaction_ids, lease_seconds)

    def expired(self, limit: int = 100) -> list[StoredRun]:
        """See `Store.expired` (values opened)."""
        return self._open_runs(self.inner.expired(limit))

    def expire_lease(self, transaction_id: str) -> None:
        """See `Store.expire_lease`."""
        self.inner.expire_lease(transaction_id)

    def put_signal(self, transaction_id: str, signal: Signal) -> str:
        """See `Store.put_signal` (the payload is sealed)."""
        return self.inner.put_signal(
            transaction_id, evolve(signal, payload=self.encryption.seal(signal.payload))
        )

    def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        limit: int = 100,
        version: int | None = None,
    ) -> list[StoredRun]:
        """See `Store.list_runs` (values opened)."""
        return self._open_runs(self.inner.list_runs(status, workflow, since, limit, version))

    def purge(self, before: float) -> int:
        """See `Store.purge`."""
        return self.inner.purge(before)

    def use_clock(self, clock: Clock) -> None:
        """See `Store.use_clock`."""
        self.inner.use_clock(clock)

    def now(self) -> float:
        """See `Store.now`."""
        return self.inner.now()

    def check(self) -> None:
        """See `Store.check`."""
        self.inner.check()

    def claim_queued(
        self,
        queue: str,
        owner: str,
        lease_seconds: float,
        workflows: Sequence[str],
        limit: int,
        concurrency: int | None = None,
        fingerprints: Sequence[str] | None = None,
        now: float | None = None,
    ) -> list[StoredRun]:
        """See `Store.claim_queued` (values opened)."""
        claimed = self.inner.claim_queued(
            queue, owner, lease_seconds, workflows, limit, concurrency, fingerprints, now
        )
        return self._open_runs(claimed)

    def due(self, now: float, workflows: Sequence[str], limit: int) -> list[StoredRun]:
        """See `Store.due` (values opened)."""
        return self._open_runs(self.inner.due(now, workflows, limit))

    def latest_scheduled(self, prefix: str) -> str | None:
        """See `Store.latest_scheduled`."""
        return self.inner.latest_scheduled(prefix)

    def queued_elsewhere(
        self, queue: str, workflows: Sequence[str], fingerprints: Sequence[str] | None = None
    ) -> dict[str, int]:
        """See `Store.queued_elsewhere`."""
        return self.inner.queued_elsewhere(queue, workflows, fingerprints)

    def listen(self, on_notify: Any) -> Any:
        """See `Store.listen`."""
        return self.inner.listen(on_notify)

    def open_session(self) -> Any:
        """See `Store.open_session`."""
        return self.inner.open_session()

    def sync_scope(self) -> SyncScope | None:
        """See `Store.sync_scope`."""
        return self.inner.sync_scope()

    def close(self) -> None:
        """See `Store.close`."""
        self.inner.close()
