"""Scale-out on PostgreSQL: runs/s and steps/s with 1, 2 and 4 worker processes.

Each row enqueues the same number of runs of a 3-step workflow, starts N `flowkit worker`
processes, and measures from the first step's start to the last run's end (worker start-up is
not counted). The latency row: with one idle worker listening, the time from `enqueue`'s commit
to the run's first step starting. Target (issue 8): >= 1.8x runs/s from 1 to 2 workers.

Usage: python benchmarks/bench_workers.py [--runs 1500] [--concurrency 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

APP = """
import os
from typing import Any
import flowkit
from flowkit import StepContext, WorkflowResponse, step, workflow
from flowkit.sqlalchemy import SqlStore

@step("one")
def one(x: Any, ctx: StepContext) -> Any:
    return x

@step("two")
def two(x: Any, ctx: StepContext) -> Any:
    return x

@step("three")
def three(x: Any, ctx: StepContext) -> Any:
    return x

@workflow("bench-job")
def bench_job(x: Any) -> Any:
    return WorkflowResponse(three(two(one(x))))

def engine() -> flowkit.Engine:
    return flowkit.Engine(SqlStore(os.environ["BENCH_URL"]), [bench_job])
"""

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def scratch_database(base: str) -> tuple[str, Any]:
    """A fresh database and the admin connection that will drop it."""
    import psycopg

    admin = psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    name = f"flowkit_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}", (admin, name)


def worker(app_dir: str, url: str, concurrency: int) -> subprocess.Popen[bytes]:
    """One `flowkit worker` process that stops once idle for a second."""
    command = [sys.executable, "-m", "flowkit.cli", "--app-dir", app_dir, "worker"]
    options = [
        "--app",
        "bench_app:engine",
        "--concurrency",
        str(concurrency),
        "--idle-timeout",
        "1",
    ]
    env = {**os.environ, "BENCH_URL": url}
    return subprocess.Popen([*command, *options], env=env, stderr=subprocess.DEVNULL)


def measure(app_dir: str, base: str, workers: int, runs: int, concurrency: int) -> dict[str, Any]:
    """Enqueue `runs`, drain them with `workers` processes, time the draining."""
    url, (admin, name) = scratch_database(base)
    try:
        os.environ["BENCH_URL"] = url
        sys.path.insert(0, app_dir)
        from bench_app import bench_job, engine  # type: ignore[import-not-found]

        from flowkit.sqlalchemy import SqlStore

        setup = SqlStore(url)
        setup.create_all()
        setup.close()
        eng = engine()
        for i in range(runs):
            eng.enqueue(bench_job, i)
        processes = [worker(app_dir, url, concurrency) for _ in range(workers)]
        for process in processes:
            process.wait(timeout=600)
        records = [eng.get(r.transaction_id) for r in eng.list(limit=runs + 10, decode=False)]
        eng.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    done = [r for r in records if r is not None and r.status.value == "done"]
    start = min(s.started_at for r in done for s in r.steps.values() if s.started_at)
    end = max(r.updated_at for r in done)
    seconds = (end - start).total_seconds()
    return {
        "workers": workers,
        "runs": len(done),
        "seconds": seconds,
        "runs_per_s": len(done) / seconds,
        "steps_per_s": 3 * len(done) / seconds,
    }


def latency(app_dir: str, base: str, samples: int) -> dict[str, float]:
    """Enqueue → first step started, with one idle worker listening (LISTEN/NOTIFY)."""
    url, (admin, name) = scratch_database(base)
    try:
        os.environ["BENCH_URL"] = url
        from bench_app import bench_job, engine

        from flowkit.sqlalchemy import SqlStore

        setup = SqlStore(url)
        setup.create_all()
        setup.close()
        eng = engine()
        env = {**os.environ, "BENCH_URL": url}
        command = [sys.executable, "-m", "flowkit.cli", "--app-dir", app_dir, "worker"]
        idle = subprocess.Popen(
            [*command, "--app", "bench_app:engine", "--concurrency", "1"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0)  # let it start and go idle (its poll wait has grown to the longest)
        delays = []
        for i in range(samples):
            enqueued = time.time()
            tx = eng.enqueue(bench_job, i)
            delays.append(_first_step_start(eng, tx) - enqueued)
            time.sleep(0.3)
        idle.terminate()
        idle.wait(timeout=30)
        eng.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    delays.sort()
    return {
        "median_ms": statistics.median(delays) * 1000,
        "p95_ms": delays[int(len(delays) * 0.95) - 1] * 1000,
    }


def _first_step_start(eng: Any, tx: str) -> float:
    deadline = time.time() + 10
    while time.time() < deadline:
        record = eng.get(tx, decode=False)
        step = record.steps.get("one") if record is not None else None
        if step is not None and step.started_at is not None:
            return float(step.started_at.timestamp())
        time.sleep(0.005)
    raise RuntimeError(f"run {tx} did not start")


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="runs at once per worker"
    )
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("FLOWKIT_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "bench_app.py").write_text(APP)
        tables = {
            c: [measure(app_dir, args.postgres_url, n, args.runs, c) for n in (1, 2, 4)]
            for c in args.concurrency
        }
        lat = latency(app_dir, args.postgres_url, args.latency_samples)
    if args.json:
        print(json.dumps({"rows": tables, "latency": lat}, indent=2))
        return 0
    for concurrency, rows in tables.items():
        print_rows(args.runs, concurrency, rows)
    print(
        f"enqueue -> first step started (idle worker, LISTEN/NOTIFY): median "
        f"{lat['median_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms (target < 50 ms)"
    )
    return 0


def print_rows(runs: int, concurrency: int, rows: list[dict[str, Any]]) -> None:
    """One table: 1, 2 and 4 workers at one per-worker concurrency."""
    print(
        f"flowkit workers on PostgreSQL: {runs} runs of 3 steps, {concurrency} at once per "
        f"worker, {os.cpu_count()} CPUs"
    )
    print(f"{'workers':>7} {'runs/s':>9} {'steps/s':>9} {'x one':>7}")
    base = rows[0]["runs_per_s"]
    for row in rows:
        print(
            f"{row['workers']:>7} {row['runs_per_s']:>9.0f} {row['steps_per_s']:>9.0f} "
            f"{row['runs_per_s'] / base:>6.2f}x"
        )
    two = rows[1]["runs_per_s"] / base
    print(f"target: 2 workers >= 1.8x one: {two:.2f}x {'met' if two >= 1.8 else 'NOT MET'}\n")


if __name__ == "__main__":
    raise SystemExit(main())
