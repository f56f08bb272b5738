"""Authorize + capture throughput of the payment module on SQLite and PostgreSQL, in one run.

Each operation authorizes a fresh payment session at the test gateway and captures it in full:
one read and one write transaction for the authorization, two write transactions around the
gateway call for the capture. Collections and sessions are made beforehand, outside the timing.
SQLite runs in WAL mode with ``synchronous=FULL`` (the module's setting: every commit is
fsynced); PostgreSQL on a temporary database that is dropped afterwards.

    python benchmarks/bench_payment_module.py [--operations 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from payment import PaymentModule, make_payment_module

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


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


def _prepare(module: PaymentModule, count: int) -> list[str]:
    sessions = []
    for _ in range(count):
        collection = module.create_payment_collection("usd", "25.00")
        session = module.create_payment_session(collection.id, "pp_test", "usd", "25.00")
        sessions.append(session.id)
    return sessions


def measure(database_url: str, operations: int) -> dict[str, float]:
    """Time `operations` authorize + capture pairs; return the summary numbers."""
    with make_payment_module(database_url) as module:
        _prepare(module, 10)  # warm up connections and statement caches
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
        "seconds": round(elapsed, 3),
        "ops_per_second": round(operations / elapsed, 1),
        "mean_ms": round(statistics.fmean(durations) * 1000, 2),
        "p95_ms": round(statistics.quantiles(durations, n=20)[-1] * 1000, 2),
    }


def _table(results: dict[str, dict[str, float] | str]) -> str:
    header = f"{'backend':<32} {'ops':>6} {'seconds':>8} {'ops/s':>8} {'mean ms':>8} {'p95 ms':>8}"
    lines = [header, "-" * len(header)]
    for backend, row in results.items():
        if isinstance(row, str):
            lines.append(f"{backend:<32} {row}")
            continue
        lines.append(
            f"{backend:<32} {row['operations']:>6.0f} {row['seconds']:>8.3f} "
            f"{row['ops_per_second']:>8.1f} {row['mean_ms']:>8.2f} {row['p95_ms']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOWKIT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="an administrative URL; a temporary database is created next to it",
    )
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float] | str] = {}
    with _sqlite_url() as url:
        results["sqlite (WAL, synchronous=FULL)"] = measure(url, args.operations)
    try:
        with _postgres_url(args.postgres_url) as url:
            results["postgresql (psycopg 3)"] = measure(url, args.operations)
    except Exception as error:  # the server may simply not be there
        results["postgresql (psycopg 3)"] = f"skipped: {type(error).__name__}: {error}"
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
