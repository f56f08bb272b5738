"""Reading an engine's runs back: one run, lists of them, results, and purging old ones.

`flowkit.Engine` has these methods from `RunQueries`; they only read (or delete finished runs)
through the engine's `Runtime` and never continue a run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flowkit.reading import list_records, load_record, load_result
from flowkit.runtime import Runtime
from flowkit.state import RunRecord, RunResult, TransactionState

__all__ = ["RunQueries"]


class RunQueries:
    """The read side of `flowkit.Engine` (runs, lists, results, purge)."""

    runtime: Runtime

    def get(self, transaction_id: str, *, decode: bool = True) -> RunRecord | None:
        """The stored run, or None when unknown.

        Args:
            transaction_id: The run's id.
            decode: Rebuild inputs and outputs as the classes they were (which imports their
                modules); False gives their JSON form, for tools that run outside the app.
        """
        return load_record(self.runtime.store, self.runtime.codec, transaction_id, decode=decode)

    def incompatible(self, workflow: str | None = None, *, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs that no definition held can continue (see `Runtime.incompatible`)."""
        return self.runtime.incompatible(workflow, limit, decode=True)

    def list(
        self,
        status: TransactionState | str | None = None,
        workflow: str | None = None,
        *,
        since: datetime | None = None,
        limit: int = 100,
        decode: bool = True,
        version: int | None = None,
    ) -> list[RunRecord]:
        """Stored runs, newest first (step records are left empty: use `get` for them).

        `decode=False` leaves inputs and outputs in their JSON form (see `get`); `version`
        keeps one workflow version's runs."""
        return list_records(
            self.runtime.store,
            self.runtime.codec,
            status,
            workflow,
            since,
            limit,
            decode=decode,
            version=version,
        )

    def purge(self, older_than: timedelta | None = None) -> int:
        """Delete finished runs last updated more than `older_than` (default: retention) ago.

        After that, their transaction ids are new again.

        Returns:
            How many runs were deleted.
        """
        age = older_than if older_than is not None else self.runtime.retention
        return self.runtime.store.purge(self.runtime.store.now() - age.total_seconds())

    def result(self, transaction_id: str) -> RunResult[Any] | None:
        """The stored `RunResult` of a run (None when unknown); errors carry no exceptions."""
        return load_result(self.runtime.store, self.runtime.codec, transaction_id)
