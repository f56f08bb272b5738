"""Accept-payment flows per second, durable, in one process (issue 5's target: >= 400 on SQLite).

A flow is the demo's `accept_payment_workflow` (collection for a cart → session at the test
gateway → authorize, approved at once) followed by `capture_payment_workflow`: two durable runs,
nine steps, every one checkpointed, every payment row written by the module. Measured on
SQLite (WAL, synchronous FULL) and PostgreSQL, with one thread and with several threads in the
same process (flowkit's group commit shares fsyncs between concurrent runs).

On SQLite the payment module's writes inside a durable step leave their fsync to the step's
checkpoint (`flowkit.syncscope`); the baseline row, measured in the same run, turns that off
so that every commit fsyncs by itself (15 fsyncs per flow instead of 9). A third row runs the
same flow with no durability at all: runs kept in memory (`MemoryStore`, no checkpoint) and
payment writes committed without fsync. It is the ceiling that no fsync or checkpoint
optimization can pass on this machine. The SQLite shops take turns in slices, so machine noise
falls on all of them alike. Rows marked "+enc" run the same flow with `Engine(...,
encryption=...)` (issue 24: every stored run value AES-GCM encrypted; target: at most 10 %
fewer flows/s than the clear row, same run). A raw INSERT+COMMIT with `synchronous=FULL` is
timed too: a flow commits at least nine times that way (two run records, seven step
checkpoints).

The row "SQLite WAL acknowledged" runs `SqlStore(url, durability="acknowledged")` (issue 22):
checkpoints without their own fsync, the WAL synced before each run returns (two runs: four
fsyncs a flow). Every row also gives the CPU a flow costs (`time.process_time`, the whole
process), and the SQL statements and transactions a flow runs (counted on every SQLite
connection: BEGIN and COMMIT are not statements; a statement outside BEGIN is a transaction
of its own, except a PRAGMA, such as the `synchronous` switch between a payment write that
leaves its fsync to the checkpoint and the checkpoint; PostgreSQL rows show "-"). Targets
(issue 22), from one run with one thread: acknowledged >= 0.85 x the no-durability row,
FULL >= 0.55 x it; with 4 threads, the FULL and acknowledged rows not below their 1-thread
figures.

Usage: python benchmarks/bench_accept_payment.py [--flows 300] [--threads 1 8 16] [--rounds 10]
       [--no-postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from accept_payment import accept_payment_workflow  # noqa: E402
from bench_durable import raw_sqlite_commit  # noqa: E402  (this script's own directory)
from sqlalchemy import Engine as SqlEngine  # noqa: E402
from sqlalchemy import event  # noqa: E402

import flowkit  # noqa: E402
from flowkit import Engine  # noqa: E402
from flowkit.memory import MemoryStore  # noqa: E402
from flowkit.sqlalchemy import SqlStore  # noqa: E402
from flowkit.sqlalchemy.sqlite import file_key, shared_connection  # noqa: E402
from flowkit.store import Store  # noqa: E402
from flowkit.syncscope import SyncScope, sync_scope  # noqa: E402
from payment import make_payment_module, register  # noqa: E402
from payment.cart import CartService  # noqa: E402
from payment.testing import InMemoryCartService  # noqa: E402
from payment.workflows import capture_payment_workflow  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class SqlCounter:
    """Statements and transactions run on every SQLite connection of this process, while
    `counting` (the timed flows run without the trace callback: it costs CPU of its own)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self._lock = threading.Lock()
        self._connections: list[Any] = []  # sqlite3 connections take no weak references
        event.listen(SqlEngine, "connect", self._connected)

    def _connected(self, dbapi_conn: Any, record: Any) -> None:
        if hasattr(dbapi_conn, "set_trace_callback"):
            with self._lock:
                self._connections.append(dbapi_conn)

    @contextmanager
    def counting(self, shared: list[Any]) -> Iterator[None]:
        """Count the statements run in the block (on `shared` too: connections opened outside
        SQLAlchemy, such as a file's `SharedConnection`)."""
        with self._lock:
            connections = list(self._connections) + shared
        for conn in connections:
            state = {"open": False}
            try:
                conn.set_trace_callback(lambda sql, state=state: self._seen(state, sql))
            except sqlite3.ProgrammingError:  # closed since
                continue
        try:
            yield
        finally:
            for conn in connections:
                try:
                    conn.set_trace_callback(None)
                except sqlite3.ProgrammingError:
                    continue

    def _seen(self, state: dict[str, bool], sql: str) -> None:
        head = sql.lstrip()[:8].upper()
        with self._lock:
            if head.startswith("BEGIN"):
                state["open"] = True
            elif head.startswith(("COMMIT", "ROLLBACK")):
                state["open"] = False
                self.transactions += 1
            else:
                self.statements += 1
                if not state["open"] and not head.startswith("PRAGMA"):
                    self.transactions += 1  # a setting (synchronous) is no transaction

    def read(self) -> tuple[int, int]:
        """(statements, transactions) so far."""
        with self._lock:
            return self.statements, self.transactions


COUNTER = SqlCounter()


class Shop:
    """One database, the payment module, carts in memory, an engine."""

    def __init__(
        self,
        url: str,
        *,
        defer_sync: bool = True,
        durable: bool = True,
        encrypted: bool = False,
        acknowledged: bool = False,
    ) -> None:
        self.store: Store
        if durable:
            sql_store = SqlStore(url, durability="acknowledged" if acknowledged else "full")
            sql_store.create_all()
            if not defer_sync:  # the baseline: the store offers no deferred-fsync scope
                sql_store.sync_scope = lambda: None  # type: ignore[method-assign]
            self.store = sql_store
        else:  # the ceiling: runs in memory, payment writes never fsynced (see `_unsynced`)
            self.store = MemoryStore()
        self.durable = durable
        self.counted = url.startswith("sqlite")  # the statement counter reads SQLite's trace
        self.module = make_payment_module(url)
        self._file = file_key(url.removeprefix("sqlite:///")) if url.startswith("sqlite") else None
        # the connection the store and the module write this file through, for the counter
        self.shared = shared_connection(self._file, 30.0) if self._file is not None else None
        self.carts = InMemoryCartService()
        registry = flowkit.Registry()
        register(registry, self.module)
        registry.register_value(CartService, self.carts)
        keys = flowkit.Encryption({"bench": flowkit.Encryption.new_key()}, "bench")
        self.engine = Engine(
            self.store,
            [accept_payment_workflow, capture_payment_workflow],
            container=registry,
            encryption=keys if encrypted else None,
        )

    @contextmanager
    def _unsynced(self) -> Iterator[None]:
        """Without durability: the payment module's commits skip their fsync, and nobody
        syncs them afterwards (a scope whose flush does nothing)."""
        if self.durable or self._file is None:
            yield
            return
        with sync_scope(SyncScope(self._file, lambda: None)):
            yield

    def flow(self) -> None:
        """One cart through accept-payment and a capture."""
        cart = self.carts.add_cart(f"cart_{uuid.uuid4().hex[:12]}", Decimal("42.00"), "usd")
        with self._unsynced():
            accepted = self.engine.run(accept_payment_workflow, {"cart_id": cart.id})
            payment = accepted.result
            self.engine.run(capture_payment_workflow, {"payment_id": payment.id})

    def close(self) -> None:
        """Release connections."""
        self.engine.close()
        self.module.close()
        if self.shared is not None:
            self.shared.detach()


def counted_flows(shop: Shop, flows: int) -> tuple[float, float]:
    """SQL statements and transactions per flow, over `flows` flows on one thread."""
    before = COUNTER.read()
    shared = [shop.shared.connection(None)] if shop.shared is not None else []
    with COUNTER.counting(shared):
        for _ in range(flows):
            shop.flow()
    after = COUNTER.read()
    return (after[0] - before[0]) / flows, (after[1] - before[1]) / flows


def timed_flows(shop: Shop, flows: int, threads: int) -> tuple[int, float, float]:
    """Run about `flows` flows on `threads` threads; (flows run, seconds, CPU seconds)."""
    per_thread = max(flows // threads, 1)

    def work() -> None:
        for _ in range(per_thread):
            shop.flow()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    cpu = time.process_time()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return per_thread * threads, elapsed, time.process_time() - cpu


def measure(
    shops: dict[str, Shop], flows: int, threads: list[int], rounds: int
) -> list[dict[str, Any]]:
    """flows/s of each shop for each thread count.

    The shops take turns in `rounds` slices of `flows / rounds` flows each, so that a noisy
    neighbour slows them alike instead of whichever happened to run during the noise.
    """
    for shop in shops.values():
        for _ in range(5):  # warm up statement caches and connections
            shop.flow()
    rows: dict[str, dict[str, Any]] = {label: {"database": label} for label in shops}
    for count in threads:
        done = dict.fromkeys(shops, 0)
        spent = dict.fromkeys(shops, 0.0)
        cpu = dict.fromkeys(shops, 0.0)
        for _ in range(rounds):
            for label, shop in shops.items():
                ran, seconds, used = timed_flows(shop, max(flows // rounds, count), count)
                done[label] += ran
                spent[label] += seconds
                cpu[label] += used
        for label in shops:
            rows[label][f"threads_{count}"] = done[label] / spent[label]
            if count == threads[0]:
                rows[label]["cpu_us_per_flow"] = cpu[label] / done[label] * 1e6
    for label, shop in shops.items():
        counted = counted_flows(shop, 20) if shop.counted else (None, None)
        rows[label]["statements_per_flow"], rows[label]["transactions_per_flow"] = counted
    return list(rows.values())


def measure_database(
    shops: dict[str, Callable[[], Shop]], flows: int, threads: list[int], rounds: int
) -> list[dict[str, Any]]:
    """Build the shops, measure them taking turns, close them."""
    built: dict[str, Shop] = {}
    try:
        for label, make in shops.items():
            built[label] = make()
        return measure(built, flows, threads, rounds)
    finally:
        for shop in built.values():
            shop.close()


def postgres_database(base: str) -> tuple[str, Any] | None:
    """A scratch PostgreSQL database, or None without a server."""
    try:
        import psycopg

        admin = psycopg.connect(
            base.replace("postgresql+psycopg://", "postgresql://"),
            autocommit=True,
            connect_timeout=3,
        )
    except Exception as exc:  # no server here
        print(f"(PostgreSQL skipped: {exc})")
        return None
    name = f"flowkit_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}", (admin, name)


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument(
        "--postgres-url", default=os.environ.get("FLOWKIT_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=10, help="turns the two SQLite shops take (default 10)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        deferred = f"sqlite:///{Path(tmp) / 'deferred.db'}"
        fsynced = f"sqlite:///{Path(tmp) / 'fsynced.db'}"
        volatile = f"sqlite:///{Path(tmp) / 'volatile.db'}"
        sealed = f"sqlite:///{Path(tmp) / 'sealed.db'}"
        acked = f"sqlite:///{Path(tmp) / 'acknowledged.db'}"
        sqlite_shops: dict[str, Callable[[], Shop]] = {
            "SQLite WAL FULL": lambda: Shop(deferred),
            "SQLite WAL acknowledged": lambda: Shop(acked, acknowledged=True),
            "SQLite WAL FULL +enc": lambda: Shop(sealed, encrypted=True),
            "  each commit fsync": lambda: Shop(fsynced, defer_sync=False),
            "  no durability": lambda: Shop(volatile, durable=False),
        }
        raw_us = raw_sqlite_commit(Path(tmp) / "raw.db", "FULL", 300)
        rows += measure_database(sqlite_shops, args.flows, args.threads, args.rounds)
        raw_us = (raw_us + raw_sqlite_commit(Path(tmp) / "raw.db", "FULL", 300)) / 2  # both ends
    if not args.no_postgres:
        scratch = postgres_database(args.postgres_url)
        sealed_scratch = postgres_database(args.postgres_url) if scratch is not None else None
        if scratch is not None and sealed_scratch is not None:
            url, (admin, name) = scratch
            sealed_url, (sealed_admin, sealed_name) = sealed_scratch
            try:  # one database each: their connection pools and locks do not meet
                pg_shops: dict[str, Callable[[], Shop]] = {
                    "PostgreSQL": lambda: Shop(url),
                    "PostgreSQL +enc": lambda: Shop(sealed_url, encrypted=True),
                }
                rows += measure_database(pg_shops, args.flows, args.threads, 2)
            finally:
                for conn, db in ((admin, name), (sealed_admin, sealed_name)):
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                    conn.close()
    if args.json:
        print(json.dumps({"flows_per_second": rows, "raw_commit_us": raw_us}, indent=2))
        return 0
    print(
        f"accept-payment + capture flows/s, one process, {os.cpu_count()} CPUs "
        f"({args.flows} flows per cell)\n"
    )
    head = (
        f"{'database':<24}"
        + "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>13}" for n in args.threads)
        + f"{'CPU µs/flow':>13}{'SQL/flow':>10}{'tx/flow':>9}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        print(
            f"{row['database']:<24}"
            + "".join(f"{row[f'threads_{n}']:>13.0f}" for n in args.threads)
            + f"{row['cpu_us_per_flow']:>13.0f}"
            + _count(row["statements_per_flow"], 10)
            + _count(row["transactions_per_flow"], 9)
        )
    print(
        f"\nraw sqlite3 INSERT+COMMIT, WAL, synchronous=FULL: {raw_us:.0f} µs "
        f"(nine per flow: {9 * raw_us / 1e3:.2f} ms, where 400 flows/s allow 2.50 ms a flow)"
    )
    by_name = {row["database"]: row for row in rows}
    for name, row in by_name.items():
        if name.endswith(" +enc") and name[:-5] in by_name:
            clear = by_name[name[:-5]]
            costs = [1 - row[f"threads_{n}"] / clear[f"threads_{n}"] for n in args.threads]
            print(
                f"encryption cost, {name[:-5]}: "
                + ", ".join(f"{c * 100:.1f} %" for c in costs)
                + f" of flows/s (target <= 10 %: {'met' if max(costs) <= 0.10 else 'NOT MET'})"
            )
    print_targets(by_name, args.threads)
    return 0


def _count(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def print_targets(by_name: dict[str, dict[str, Any]], threads: list[int]) -> None:
    """Issue 22's ratios, from this run."""
    ceiling = by_name.get("  no durability")
    if ceiling is None:
        return
    one = f"threads_{threads[0]}"
    print(f"targets (issue 22, {threads[0]} thread), as a share of the no-durability row:")
    for name, limit in (("SQLite WAL acknowledged", 0.85), ("SQLite WAL FULL", 0.55)):
        if name in by_name:
            ratio = by_name[name][one] / ceiling[one]
            verdict = "met" if ratio >= limit else "NOT MET"
            print(f"  {name:<24} {ratio:.2f} x   target >= {limit}  {verdict}")
    if 4 in threads:
        for name in ("SQLite WAL FULL", "SQLite WAL acknowledged"):
            if name in by_name:
                gain = by_name[name]["threads_4"] / by_name[name][one]
                verdict = "met" if gain >= 1.0 else "NOT MET"
                print(f"  {name:<24} 4 threads / 1 thread {gain:.2f}   target >= 1  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
