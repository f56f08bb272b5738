"""Throughput of the payment module on SQLite and PostgreSQL, next to a raw commit, in one run.

Rows per database:

- ``commit floor``: one raw INSERT+COMMIT on a plain DBAPI connection to the same kind of
  database (SQLite: a WAL file with ``synchronous=FULL``; PostgreSQL: the same server), the I/O
  floor of any write transaction.
- ``authorize+capture``: authorize a fresh session at the test gateway and capture it in full
  (collections and sessions are made beforehand, outside the timing).
- ``flow``: the accept-payment flow a checkout runs, each a module call as a workflow step
  makes it, with explicit idempotency keys: create_payment_collection →
  create_payment_session (pp_test) → authorize_payment_session → capture_payment; single
  thread, then 8 threads on distinct collections. Per operation: mean µs.

SQLite runs in WAL mode with ``synchronous=FULL`` (the module's setting: every commit is
fsynced); PostgreSQL on a temporary database that is dropped afterwards. Each figure is the
best of ``--repeats`` runs (the machine is shared; the best run is the least disturbed).

    python benchmarks/bench_payment_module.py [--operations 300] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from payment import PaymentModule, make_payment_module

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
THREADS = 8
FLOW_OPERATIONS = ("create_collection", "create_session", "authorize", "capture")

Row = dict[str, Any]


@contextmanager
def _sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'bench.db'}"


@contextmanager
def _postgres_url(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"payment_bench_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the floor: one raw INSERT+COMMIT -----------------------------------------------------------


def _raw_sqlite_commit(database_url: str, count: int) -> float:
    """Seconds for one INSERT+COMMIT on a SQLite file next to the module's (WAL, FULL)."""
    path = Path(database_url.removeprefix("sqlite:///")).with_name("floor.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body TEXT)")
    start = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO raw (body) VALUES (?)", (f"row {i} " * 8,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / count


def _raw_postgres_commit(database_url: str, count: int) -> float:
    """Seconds for one INSERT+COMMIT on PostgreSQL (psycopg 3, one connection)."""
    import psycopg

    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw (id SERIAL PRIMARY KEY, body TEXT)")
        conn.commit()
        start = time.perf_counter()
        for i in range(count):
            conn.execute("INSERT INTO raw (body) VALUES (%s)", (f"row {i} " * 8,))
            conn.commit()
        elapsed = time.perf_counter() - start
    return elapsed / count


def measure_floor(database_url: str, operations: int) -> Row:
    """The commit floor row."""
    raw = _raw_sqlite_commit if database_url.startswith("sqlite") else _raw_postgres_commit
    seconds = raw(database_url, operations)
    return {"operations": operations, "ops_per_second": 1 / seconds, "mean_us": seconds * 1e6}


# --- authorize + capture ------------------------------------------------------------------------


def _prepare(module: PaymentModule, count: int) -> list[str]:
    sessions = []
    for _ in range(count):
        collection = module.create_payment_collection("usd", "25.00")
        session = module.create_payment_session(collection.id, "pp_test", "usd", "25.00")
        sessions.append(session.id)
    return sessions


def measure_authorize_capture(module: PaymentModule, operations: int) -> Row:
    """Time `operations` authorize + capture pairs."""
    sessions = _prepare(module, operations)
    durations = []
    started = time.perf_counter()
    for session_id in sessions:
        begin = time.perf_counter()
        payment = module.authorize_payment_session(session_id)
        assert payment is not None
        module.capture_payment(payment.id)
        durations.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {
        "operations": operations,
        "ops_per_second": operations / elapsed,
        "mean_us": statistics.fmean(durations) * 1e6,
        "p95_us": statistics.quantiles(durations, n=20)[-1] * 1e6,
    }


# --- the accept-payment flow --------------------------------------------------------------------


def _flow(module: PaymentModule, key: str, timings: dict[str, list[float]]) -> None:
    """One accept-payment flow; each call gets its step's idempotency key."""
    clock = time.perf_counter
    t0 = clock()
    collection = module.create_payment_collection("usd", "25.00", idempotency_key=f"{key}:col")
    t1 = clock()
    session = module.create_payment_session(
        collection.id, "pp_test", "usd", "25.00", idempotency_key=f"{key}:ses"
    )
    t2 = clock()
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    t3 = clock()
    module.capture_payment(payment.id, idempotency_key=f"{key}:cap")
    t4 = clock()
    for name, begin, end in zip(FLOW_OPERATIONS, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
        timings[name].append(end - begin)


def measure_flow(module: PaymentModule, operations: int, threads: int) -> Row:
    """Time `operations` flows spread over `threads` threads (distinct collections)."""
    run_id = uuid.uuid4().hex[:8]
    per_thread: list[dict[str, list[float]]] = [
        {name: [] for name in FLOW_OPERATIONS} for _ in range(threads)
    ]
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        barrier.wait()
        for i in range(index, operations, threads):
            _flow(module, f"{run_id}:{i}", per_thread[index])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    row: Row = {"operations": operations, "ops_per_second": operations / elapsed}
    row["mean_us"] = elapsed / operations * threads * 1e6
    for name in FLOW_OPERATIONS:
        samples = [s for timings in per_thread for s in timings[name]]
        row[f"{name}_us"] = statistics.fmean(samples) * 1e6
    return row


# --- running and printing -----------------------------------------------------------------------


def _best(measure: Callable[[], Row], repeats: int) -> Row:
    return max((measure() for _ in range(repeats)), key=lambda row: row["ops_per_second"])


def measure_backend(database_url: str, operations: int, repeats: int) -> dict[str, Row]:
    """Every row for one database."""
    rows = {"commit floor": _best(lambda: measure_floor(database_url, operations), repeats)}
    with make_payment_module(database_url) as module:
        _prepare(module, 20)  # warm up connections and statement caches
        rows["authorize+capture"] = _best(
            lambda: measure_authorize_capture(module, operations), repeats
        )
        rows["flow, 1 thread"] = _best(lambda: measure_flow(module, operations, 1), repeats)
        rows[f"flow, {THREADS} threads"] = _best(
            lambda: measure_flow(module, operations, THREADS), repeats
        )
    return rows


def _format_row(name: str, row: Row) -> str:
    steps = " ".join(f"{row.get(f'{op}_us', 0):>9.0f}" for op in FLOW_OPERATIONS)
    if "create_collection_us" not in row:
        steps = " ".join(f"{'':>9}" for _ in FLOW_OPERATIONS)
    return f"  {name:<22} {row['ops_per_second']:>8.1f} {row['mean_us']:>9.0f} {steps}"


def _table(results: dict[str, dict[str, Row] | str]) -> str:
    columns = " ".join(f"{op[:9]:>9}" for op in ("collection", "session", "authorize", "capture"))
    header = f"  {'row':<22} {'ops/s':>8} {'mean µs':>9} {columns}"
    lines = [header, "-" * len(header)]
    for backend, rows in results.items():
        lines.append(backend)
        if isinstance(rows, str):
            lines.append(f"  {rows}")
            continue
        lines.extend(_format_row(name, row) for name, row in rows.items())
        floor = rows["commit floor"]["mean_us"]
        flow = rows["flow, 1 thread"]["mean_us"]
        lines.append(f"  (1-thread flow = {flow / floor:.1f} commit floors)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOWKIT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="an administrative URL; a temporary database is created next to it",
    )
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Row] | str] = {}
    with _sqlite_url() as url:
        results["sqlite (WAL, synchronous=FULL)"] = measure_backend(
            url, args.operations, args.repeats
        )
    if not args.no_postgres:
        try:
            with _postgres_url(args.postgres_url) as url:
                results["postgresql (psycopg 3)"] = measure_backend(
                    url, args.operations, args.repeats
                )
        except Exception as error:  # the server may simply not be there
            results["postgresql (psycopg 3)"] = f"skipped: {type(error).__name__}: {error}"
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
