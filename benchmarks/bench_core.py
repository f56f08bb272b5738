"""In-memory cost of the flowkit core per step, next to a plain-Python saga baseline.

Runs workflows of N trivial steps (N = 1, 10, 50, 1000), sync and async, in the success case and
in the all-compensate case (every step has a compensation, the last step fails), and the same N
functions called in a hand-written try/except saga with a reverse compensation list, measured in
the same process. Prints a table (or JSON with `--json`) and the issue's targets beside the
figures. structlog is configured to filter DEBUG out, as a production application would.

    python benchmarks/bench_core.py            # full run, with the memory-flatness check
    python benchmarks/bench_core.py --quick    # a few seconds, no memory check
    python benchmarks/bench_core.py --json     # machine-readable
    python benchmarks/bench_core.py --quick --otel sdk   # runs through an instrumented engine

`--otel none` (the default) measures `workflow.run(...)` in memory, OpenTelemetry not even
imported; `--otel engine` runs the same workflows through an `Engine` on a `MemoryStore`, not
instrumented; `--otel sdk` through that engine instrumented by `flowkit.otel` with the
OpenTelemetry SDK (spans to an exporter that drops them, metrics to an in-memory reader), so the
difference between the last two is the cost of tracing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

import flowkit
from flowkit import Workflow, WorkflowResponse

SIZES = (1, 10, 50, 1000)
TARGET_US_PER_STEP_N10 = 2.0
TARGET_ONE_STEP_RUN_US = 10.0
TARGET_FLATNESS = 1.2


class Boom(Exception):
    """The failure of the last step in the all-compensate case."""


# --- the work: trivial steps, shared by flowkit and the baseline --------------------------------


def ident(value: Any, ctx: Any) -> Any:
    """A trivial sync step."""
    return value


def boom(value: Any, ctx: Any) -> Any:
    """A sync step that fails."""
    raise Boom("last step fails")


def undo(value: Any, ctx: Any) -> None:
    """A trivial sync compensation."""


async def aident(value: Any, ctx: Any) -> Any:
    """A trivial async step."""
    return value


async def aboom(value: Any, ctx: Any) -> Any:
    """An async step that fails."""
    raise Boom("last step fails")


async def aundo(value: Any, ctx: Any) -> None:
    """A trivial async compensation."""


def step_functions(n: int, *, is_async: bool, fail: bool) -> tuple[list[Any], list[Any]]:
    """The N invoke functions (the last one failing when `fail`) and their compensations."""
    ok, bad, comp = (aident, aboom, aundo) if is_async else (ident, boom, undo)
    fns = [ok] * n
    if fail:
        fns[-1] = bad
    return fns, [comp] * n


def build_workflow(n: int, *, is_async: bool, fail: bool) -> Workflow[Any, Any]:
    """A workflow chaining N steps, each with a compensation."""
    fns, comps = step_functions(n, is_async=is_async, fail=fail)
    steps = []
    for i, (fn, comp) in enumerate(zip(fns, comps, strict=True)):
        made = flowkit.step(f"s{i}")(fn)
        made.compensate(comp)
        steps.append(made)

    def compose(inp: Any) -> Any:
        value = inp
        for made in steps:
            value = made(value)
        return WorkflowResponse(value)

    kind = "async" if is_async else "sync"
    outcome = "fail" if fail else "ok"
    return flowkit.workflow(f"bench-{kind}-{outcome}-{n}")(compose)


# --- the baseline: a hand-written saga ----------------------------------------------------------


def baseline_saga(fns: list[Any], comps: list[Any], value: Any) -> Any:
    """Call the functions in turn; on failure undo the failing one (None), then the rest."""
    done: list[tuple[Any, Any]] = []
    try:
        for fn, comp in zip(fns, comps, strict=True):
            value = fn(value, None)
            done.append((comp, value))
    except Exception:
        comps[len(done)](None, None)
        for comp, comp_input in reversed(done):
            comp(comp_input, None)
        return None
    return value


async def baseline_saga_async(fns: list[Any], comps: list[Any], value: Any) -> Any:
    """`baseline_saga` with awaits."""
    done: list[tuple[Any, Any]] = []
    try:
        for fn, comp in zip(fns, comps, strict=True):
            value = await fn(value, None)
            done.append((comp, value))
    except Exception:
        await comps[len(done)](None, None)
        for comp, comp_input in reversed(done):
            await comp(comp_input, None)
        return None
    return value


# --- timing -------------------------------------------------------------------------------------


class Timer:
    """Best-of-repeats timing with calibration and a warm-up."""

    def __init__(self, repeats: int, min_time: float) -> None:
        self.repeats = repeats
        self.min_time = min_time

    def seconds_per_call(self, call: Callable[[], Any]) -> float:
        """Best seconds per call of `call`."""
        number = self._calibrate(lambda k: _loop(call, k))
        _loop(call, number)  # warm-up
        return min(_loop(call, number) for _ in range(self.repeats)) / number

    async def seconds_per_call_async(self, call: Callable[[], Awaitable[Any]]) -> float:
        """Best seconds per awaited call of `call`, on the running loop."""
        number = 1
        while (elapsed := await _aloop(call, number)) < self.min_time:
            number *= 2 if elapsed > self.min_time / 10 else 10
        await _aloop(call, number)  # warm-up
        best = min([await _aloop(call, number) for _ in range(self.repeats)])
        return best / number

    def _calibrate(self, run: Callable[[int], float]) -> int:
        number = 1
        while (elapsed := run(number)) < self.min_time:
            number *= 2 if elapsed > self.min_time / 10 else 10
        return number


def _loop(call: Callable[[], Any], number: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        call()
    return time.perf_counter() - start


async def _aloop(call: Callable[[], Awaitable[Any]], number: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        await call()
    return time.perf_counter() - start


def engine_for(flow: Workflow[Any, Any], otel: str) -> Any:
    """None for `--otel none`; else an engine on a MemoryStore, instrumented for `sdk`."""
    if otel == "none":
        return None
    engine = flowkit.Engine(flowkit.MemoryStore(), [flow])
    if otel == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult as Result

        from flowkit.otel import instrument

        class Dropping(SpanExporter):
            def export(self, spans: Any) -> Result:
                return Result.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(Dropping()))
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        instrument(engine, tracer_provider=tracer_provider, meter_provider=meters)
    return engine


def measure_sync(timer: Timer, n: int, fail: bool, otel: str = "none") -> dict[str, Any]:
    """flowkit and baseline seconds per run, sync steps."""
    flow = build_workflow(n, is_async=False, fail=fail)
    fns, comps = step_functions(n, is_async=False, fail=fail)
    engine = engine_for(flow, otel)
    flow_s = timer.seconds_per_call(lambda: flow.run(0, throw_on_error=False, engine=engine))
    base_s = timer.seconds_per_call(lambda: baseline_saga(fns, comps, 0))
    _check(flow.run(0, throw_on_error=False, engine=engine), fail)
    return _row("sync", n, fail, flow_s, base_s)


async def measure_async(timer: Timer, n: int, fail: bool, otel: str = "none") -> dict[str, Any]:
    """flowkit (`await run_async`) and baseline seconds per run, async steps, on one loop."""
    flow = build_workflow(n, is_async=True, fail=fail)
    fns, comps = step_functions(n, is_async=True, fail=fail)
    engine = engine_for(flow, otel)
    flow_s = await timer.seconds_per_call_async(
        lambda: flow.run_async(0, throw_on_error=False, engine=engine)
    )
    base_s = await timer.seconds_per_call_async(lambda: baseline_saga_async(fns, comps, 0))
    _check(await flow.run_async(0, throw_on_error=False, engine=engine), fail)
    return _row("async", n, fail, flow_s, base_s)


def _check(result: Any, fail: bool) -> None:
    expected = "reverted" if fail else "done"
    if result.status.value != expected:
        raise SystemExit(f"benchmark workflow ended {result.status.value}, expected {expected}")


def _row(mode: str, n: int, fail: bool, flow_s: float, base_s: float) -> dict[str, Any]:
    return {
        "mode": mode,
        "case": "all-compensate" if fail else "success",
        "steps": n,
        "flowkit_us_per_run": flow_s * 1e6,
        "flowkit_us_per_step": flow_s * 1e6 / n,
        "baseline_us_per_run": base_s * 1e6,
        "baseline_us_per_step": base_s * 1e6 / n,
        "ratio": flow_s / base_s,
    }


# --- memory -------------------------------------------------------------------------------------


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_check(runs: int) -> dict[str, Any]:
    """Run a 10-step workflow `runs` times; report RSS, live objects and traced memory growth."""
    flow = build_workflow(10, is_async=False, fail=False)
    for _ in range(10_000):
        flow.run(0)
    gc.collect()
    rss_before, objects_before = _rss_kib(), len(gc.get_objects())
    start = time.perf_counter()
    for _ in range(runs):
        flow.run(0)
    elapsed = time.perf_counter() - start
    gc.collect()
    rss_after, objects_after = _rss_kib(), len(gc.get_objects())
    traced_runs = max(runs // 10, 1000)
    tracemalloc.start()
    for _ in range(1000):
        flow.run(0)
    gc.collect()
    traced_before = tracemalloc.get_traced_memory()[0]
    for _ in range(traced_runs):
        flow.run(0)
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss_growth = None if rss_before is None or rss_after is None else rss_after - rss_before
    return {
        "runs": runs,
        "seconds": elapsed,
        "rss_growth_kib": rss_growth,
        "live_objects_growth": objects_after - objects_before,
        "traced_runs": traced_runs,
        "traced_growth_bytes": traced_after - traced_before,
        "traced_bytes_per_run": (traced_after - traced_before) / traced_runs,
    }


# --- report -------------------------------------------------------------------------------------


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets with the figures measured for them."""
    sync_ok = {r["steps"]: r for r in rows if r["mode"] == "sync" and r["case"] == "success"}
    flat = sync_ok[1000]["flowkit_us_per_step"] / sync_ok[10]["flowkit_us_per_step"]
    checks = [
        ("sync µs/step at N=10", sync_ok[10]["flowkit_us_per_step"], TARGET_US_PER_STEP_N10),
        ("one-step run, µs in all", sync_ok[1]["flowkit_us_per_run"], TARGET_ONE_STEP_RUN_US),
        ("per-step N=1000 / N=10", flat, TARGET_FLATNESS),
    ]
    return [
        {"target": name, "measured": value, "limit": limit, "met": value <= limit}
        for name, value, limit in checks
    ]


def print_table(report: dict[str, Any]) -> None:
    """Print the human-readable report."""
    env = report["environment"]
    logging_mode = {
        "info": "structlog at INFO (JSON lines to /dev/null): every run's outcome is rendered",
        "warning": "structlog at WARNING (JSON lines to /dev/null): only failures are rendered",
        "unconfigured": "structlog unconfigured",
    }[env["structlog"]]
    where = {
        "none": "in memory",
        "engine": "through an Engine on a MemoryStore",
        "sdk": "through an Engine on a MemoryStore, traced by flowkit.otel (OpenTelemetry SDK)",
    }[env["otel"]]
    print(
        f"flowkit core, {where}: CPython {env['python']}, {env['cpus']} CPUs, "
        f"best of {env['repeats']}; {logging_mode}; OpenTelemetry "
        f"{'imported' if env['opentelemetry_imported'] else 'not imported'}"
    )
    print("async rows: `await workflow.run_async(...)` on one running loop\n")
    header = (
        f"{'mode':<6} {'case':<15} {'N':>5} {'flowkit µs/step':>16} "
        f"{'baseline µs/step':>17} {'ratio':>7} {'flowkit µs/run':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        print(
            f"{r['mode']:<6} {r['case']:<15} {r['steps']:>5} "
            f"{r['flowkit_us_per_step']:>16.2f} {r['baseline_us_per_step']:>17.3f} "
            f"{r['ratio']:>6.1f}x {r['flowkit_us_per_run']:>15.1f}"
        )
    print("\ntargets (issue 2)")
    for t in report["targets"]:
        verdict = "met" if t["met"] else "NOT MET"
        print(f"  {t['target']:<26} {t['measured']:>8.2f}   target <= {t['limit']:<5g} {verdict}")
    memory = report.get("memory")
    if memory:
        rss = memory["rss_growth_kib"]
        runs, seconds = memory["runs"], memory["seconds"]
        print(f"\nmemory: {runs:,} runs of a 10-step workflow in {seconds:.1f} s")
        print(f"  RSS growth            {rss if rss is not None else 'n/a'} KiB")
        print(f"  live objects growth   {memory['live_objects_growth']}")
        print(
            f"  traced growth         {memory['traced_growth_bytes']} bytes over "
            f"{memory['traced_runs']:,} runs ({memory['traced_bytes_per_run']:.3f} B/run)"
        )


def configure_structlog(level: int) -> None:
    """Filter below `level`, render JSON lines to /dev/null, as a production application would."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter loops")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the memory-flatness check (default: on, off with --quick)",
    )
    parser.add_argument("--memory-runs", type=int, default=200_000, metavar="RUNS")
    parser.add_argument(
        "--structlog",
        choices=("info", "warning", "unconfigured"),
        default="info",
        help="info: filter DEBUG out, render run outcomes (default); warning: render failures "
        "only; unconfigured: no logging",
    )
    parser.add_argument(
        "--otel",
        choices=("none", "engine", "sdk"),
        default="none",
        help="none: in memory, no OpenTelemetry (default); engine: through an Engine on a "
        "MemoryStore; sdk: that engine instrumented by flowkit.otel with the SDK",
    )
    args = parser.parse_args(argv)
    if args.structlog != "unconfigured":
        configure_structlog(logging.INFO if args.structlog == "info" else logging.WARNING)
    repeats, min_time = (3, 0.02) if args.quick else (5, 0.1)
    timer = Timer(repeats, min_time)
    otel = args.otel
    rows = [measure_sync(timer, n, fail, otel) for fail in (False, True) for n in SIZES]

    async def async_rows() -> list[dict[str, Any]]:
        return [await measure_async(timer, n, fail, otel) for fail in (False, True) for n in SIZES]

    rows += asyncio.run(async_rows())
    report: dict[str, Any] = {
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpus": os.cpu_count(),
            "repeats": repeats,
            "structlog": args.structlog,
            "otel": otel,
            "opentelemetry_imported": any(m.startswith("opentelemetry") for m in sys.modules),
            "flowkit": importlib.metadata.version("flowkit"),
        },
        "results": rows,
        "targets": targets(rows),
    }
    with_memory = (not args.quick) if args.memory is None else args.memory
    if with_memory:
        report["memory"] = memory_check(args.memory_runs)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
