"""Spans exported over OTLP/HTTP (protobuf) reach a collector: a minimal one in this process."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

import flowkit
from flowkit import Engine, RetryPolicy, StepContext, WorkflowResponse, step, workflow
from flowkit.sqlalchemy import SqlStore

README = Path(__file__).resolve().parents[2] / "README.md"
_calls: dict[str, int] = {}


@step("pack", retry=RetryPolicy(max_retries=1))
def pack(order: str, ctx: StepContext) -> str:
    """Fail the first attempt, then pack."""
    _calls[order] = _calls.get(order, 0) + 1
    if _calls[order] == 1:
        raise RuntimeError("the box tore")
    return f"packed-{order}"


@step("ship", async_completion=True)
def ship(parcel: str, ctx: StepContext) -> str:
    """Wait for the carrier's pick-up."""
    return f"waiting-{parcel}"


@workflow("otlp-ship")
def ship_flow(order: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """Pack (retried once), then wait for the carrier."""
    return WorkflowResponse(ship(pack(order)))


class Collector:
    """What the minimal collector received: one decoded request per POST to /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every received span with its resource's attributes."""
        with self.lock:
            return [
                (_attributes(resource.resource.attributes), span)
                for request in self.requests
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        """Accepts OTLP/HTTP protobuf trace exports, as a collector's `otlp` receiver does."""

        def do_POST(self) -> None:
            """Decode the export request and answer with an empty success."""
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with collector.lock:
                collector.requests.append(request)
                collector.paths.append(self.path)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

    return Receive


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    """A minimal OTLP/HTTP collector on 127.0.0.1 (a free port), served from a thread."""
    received = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _readme_export_block() -> str:
    """The README's export code: the Python block of its OpenTelemetry section that exports."""
    section = README.read_text().split("## OpenTelemetry traces and metrics", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (export,) = [b for b in blocks if "OTLPSpanExporter" in b]
    return export


def test_readme_export_code_sends_the_runs_spans_to_an_otlp_collector(
    collector: tuple[Collector, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's block, with its environment variables pointed at a collector, delivers
    the run's spans over OTLP/HTTP to /v1/traces: service name, span names, attributes, one
    trace, the failed attempt's ERROR status."""
    received, port = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    store = SqlStore(f"sqlite:///{tmp_path}/otlp.db")
    store.create_all()
    with Engine(store, [ship_flow]) as engine:
        code = _readme_export_block()
        assert "\n...  " in code  # where the application works: the test runs a workflow there
        code = code.replace("\n...  ", "\nengine.run(ship_flow, 'o1', transaction_id='tx-otlp')  ")
        exec(compile(code, str(README), "exec"), {"engine": engine, "ship_flow": ship_flow})
        assert engine.get("tx-otlp").status.value == "waiting"  # type: ignore[union-attr]
    found = received.spans()
    assert set(received.paths) == {"/v1/traces"}
    assert {resource["service.name"] for resource, _ in found} == {"shop"}
    by_name: dict[str, list[Any]] = {}
    for _, span in found:
        by_name.setdefault(span.name, []).append(span)
    assert set(by_name) == {"flowkit.run otlp-ship", "flowkit.step pack", "flowkit.step ship"}
    (run,) = by_name["flowkit.run otlp-ship"]
    assert _attributes(run.attributes) == {
        "flowkit.transaction_id": "tx-otlp",
        "flowkit.workflow": "otlp-ship",
        "flowkit.version": "1",
        "flowkit.state": "waiting",
    }
    packs = sorted(by_name["flowkit.step pack"], key=lambda s: s.start_time_unix_nano)
    assert [_attributes(s.attributes)["flowkit.attempt"] for s in packs] == [1, 2]
    assert [_attributes(s.attributes)["flowkit.state"] for s in packs] == ["failed", "done"]
    assert packs[0].status.code == packs[0].status.STATUS_CODE_ERROR
    (shipped,) = by_name["flowkit.step ship"]
    assert _attributes(shipped.attributes)["flowkit.step"] == "ship"
    assert {span.trace_id for _, span in found} == {run.trace_id}
    assert all(s.parent_span_id == run.span_id for s in [*packs, shipped])
