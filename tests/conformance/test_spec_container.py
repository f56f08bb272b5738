"""Spec §5, the container: lifetimes, cleanup in reverse, per-run scopes, lookups."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flowkit import (
    Registry,
    Scope,
    ServiceNotFound,
    StepContext,
    WorkflowResponse,
    parallelize,
    step,
    workflow,
)


class Settings:
    """A value registered as is."""


class Clock:
    """A singleton service."""


class Connection:
    """A scoped service with a cleanup."""

    def __init__(self, name: str = "conn") -> None:
        self.name = name
        self.closed_with: list[BaseException | None] = []


class Token:
    """A transient service."""


def test_singleton_is_one_per_registry() -> None:
    """A singleton is built once per registry and shared by every scope."""
    registry = Registry()
    registry.register_factory(Clock, Clock, lifetime="singleton")
    with registry.scope() as one, registry.scope() as two:
        assert one.resolve(Clock) is two.resolve(Clock)
        assert one.scope().resolve(Clock) is one.resolve(Clock)


def test_scoped_is_one_per_scope() -> None:
    """A scoped service is built once per scope; another scope gets its own."""
    registry = Registry()
    registry.register_factory(Connection, Connection, lifetime="scoped")
    with registry.scope() as one, registry.scope() as two:
        assert one.resolve(Connection) is one.resolve(Connection)
        assert one.resolve(Connection) is not two.resolve(Connection)
        assert one.scope().resolve(Connection) is not one.resolve(Connection)


def test_transient_is_new_on_every_resolve() -> None:
    """A transient service is built again on every `resolve`."""
    registry = Registry()
    registry.register_factory(Token, Token, lifetime="transient")
    with registry.scope() as scope:
        assert scope.resolve(Token) is not scope.resolve(Token)


def test_factory_taking_one_parameter_gets_a_scope() -> None:
    """Scoped/transient factories get the resolving scope; singletons get the root scope."""
    registry = Registry()
    got: dict[str, Scope] = {}

    def scoped(scope: Scope) -> Connection:
        got["scoped"] = scope
        return Connection()

    def transient(scope: Scope) -> Token:
        got["transient"] = scope
        return Token()

    def singleton(scope: Scope) -> Clock:
        got["singleton"] = scope
        return Clock()

    registry.register_factory(Connection, scoped, lifetime="scoped")
    registry.register_factory(Token, transient, lifetime="transient")
    registry.register_factory(Clock, singleton, lifetime="singleton")
    with registry.scope() as scope:
        scope.resolve(Connection)
        scope.resolve(Token)
        scope.resolve(Clock)
    assert got["scoped"] is scope
    assert got["transient"] is scope
    assert got["singleton"] is registry.root


def test_a_factory_can_resolve_other_services_from_its_scope() -> None:
    """A factory taking the scope can resolve its own dependencies from it."""
    registry = Registry()
    settings = Settings()
    registry.register_value(Settings, settings)
    registry.register_factory(Connection, lambda scope: (scope.resolve(Settings), Connection()))
    with registry.scope() as scope:
        assert scope.resolve(Connection)[0] is settings


def _tracked(log: list[Any], name: str) -> Any:
    def factory() -> Iterator[str]:
        log.append(("open", name))
        try:
            yield name
        except BaseException as exc:
            log.append(("close", name, exc))
            raise
        else:
            log.append(("close", name, None))

    return factory


def test_generator_cleanups_run_in_reverse_order() -> None:
    """Generator factories' cleanups run when the scope closes, last built first."""
    log: list[Any] = []
    registry = Registry()
    for key in ("first", "second", "third"):
        registry.register_factory(key, _tracked(log, key))
    with registry.scope() as scope:
        for key in ("first", "second", "third"):
            scope.resolve(key)
    closes = [entry[1] for entry in log if entry[0] == "close"]
    assert closes == ["third", "second", "first"]


def test_generator_cleanup_sees_the_exception() -> None:
    """A cleanup sees the exception that closed the scope."""
    log: list[Any] = []
    registry = Registry()
    registry.register_factory("conn", _tracked(log, "conn"))
    error = ValueError("request failed")

    def handle_request() -> None:
        with registry.scope() as scope:
            scope.resolve("conn")
            raise error

    with pytest.raises(ValueError, match="request failed"):
        handle_request()
    assert log[-1] == ("close", "conn", error)


def test_transient_generator_is_cleaned_up_with_the_resolving_scope() -> None:
    """Each transient generator instance is cleaned up when the scope that resolved it closes."""
    log: list[Any] = []
    registry = Registry()
    registry.register_factory("token", _tracked(log, "token"), lifetime="transient")
    with registry.scope() as scope:
        scope.resolve("token")
        scope.resolve("token")
        assert [e[0] for e in log] == ["open", "open"]
    assert [e[0] for e in log] == ["open", "open", "close", "close"]


def test_registry_close_runs_singleton_cleanups() -> None:
    """`registry.close()` cleans up singletons; closing a scope does not."""
    log: list[Any] = []
    registry = Registry()
    registry.register_factory("clock", _tracked(log, "clock"), lifetime="singleton")
    with registry.scope() as scope:
        scope.resolve("clock")
    assert log == [("open", "clock")]
    registry.close()
    assert log == [("open", "clock"), ("close", "clock", None)]


def test_child_scope_sees_parent_values_and_has_its_own_services() -> None:
    """`scope.scope()` nests: values registered on the parent are seen, services are its own."""
    registry = Registry()
    registry.register_factory(Connection, Connection)
    with registry.scope() as parent:
        request = object()
        parent.register_value("request", request)
        child = parent.scope()
        assert child.resolve("request") is request
        assert child.resolve(Connection) is not parent.resolve(Connection)
        child.close()


def test_keys_are_types_or_strings() -> None:
    """Types and strings both work as keys."""
    registry = Registry()
    settings = Settings()
    registry.register_value(Settings, settings)
    registry.register_value("dsn", "sqlite://")
    with registry.scope() as scope:
        assert scope.resolve(Settings) is settings
        assert scope.resolve("dsn") == "sqlite://"


def test_missing_key_names_the_key_and_what_is_registered() -> None:
    """`ServiceNotFound` (a `LookupError`) names the missing key and the registered ones."""
    registry = Registry()
    registry.register_value(Settings, Settings())
    registry.register_factory("dsn", lambda: "x")
    with registry.scope() as scope, pytest.raises(ServiceNotFound) as caught:
        scope.resolve(Clock)
    error = caught.value
    assert isinstance(error, LookupError)
    assert error.key is Clock
    message = str(error)
    assert "Clock" in message
    assert "Settings" in message
    assert "dsn" in message


def test_resolve_is_thread_safe() -> None:
    """Threads resolving one scoped service at once get a single instance, built once."""
    built: list[int] = []

    def slow() -> Connection:
        built.append(1)
        time.sleep(0.02)
        return Connection()

    registry = Registry()
    registry.register_factory(Connection, slow)
    with registry.scope() as scope, ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _: scope.resolve(Connection), range(8)))
    assert len(built) == 1
    assert all(c is got[0] for c in got)


def test_two_registries_coexist() -> None:
    """Two registries in one process keep separate registrations and singletons."""
    left, right = Registry(), Registry()
    left.register_value("name", "left")
    right.register_value("name", "right")
    left.register_factory(Clock, Clock, lifetime="singleton")
    right.register_factory(Clock, Clock, lifetime="singleton")
    with left.scope() as a, right.scope() as b:
        assert (a.resolve("name"), b.resolve("name")) == ("left", "right")
        assert a.resolve(Clock) is not b.resolve(Clock)


# --- the container of a run -------------------------------------------------------------------


def _connection_workflow(name: str, seen: list[Any], *, fail: bool = False) -> Any:
    @step("first")
    def first(inp: Any, ctx: StepContext) -> None:
        seen.append(ctx.resolve(Connection))

    @step("second")
    def second(inp: Any, ctx: StepContext) -> None:
        seen.append(ctx.resolve(Connection))
        if fail:
            raise ValueError("second failed")

    @workflow(name)
    def flow(inp: Any) -> Any:
        first(inp)
        return WorkflowResponse(second(inp))

    return flow


def _closing_connection() -> Iterator[Connection]:
    conn = Connection()
    try:
        yield conn
    except BaseException as exc:
        conn.closed_with.append(exc)
        raise
    else:
        conn.closed_with.append(None)


def test_each_run_gets_a_fresh_child_scope() -> None:
    """Scoped services are shared by a run's steps and fresh for each run, under one container."""
    seen: list[Connection] = []
    registry = Registry()
    registry.register_factory(Connection, Connection)
    flow = _connection_workflow("fresh-scope", seen)
    with registry.scope() as request_scope:
        flow.run(0, container=request_scope)
        flow.run(0, container=request_scope)
        outer = request_scope.resolve(Connection)
    assert seen[0] is seen[1]
    assert seen[2] is seen[3]
    assert seen[0] is not seen[2]
    assert outer not in seen


def test_run_scope_sees_values_of_the_given_scope() -> None:
    """A run's scope is a child of the given one: values registered on it are visible."""
    request = object()
    got: list[Any] = []

    @step("read")
    def read(inp: Any, ctx: StepContext) -> None:
        got.append(ctx.resolve("request"))

    @workflow("parent-values")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(read(inp))

    with Registry().scope() as scope:
        scope.register_value("request", request)
        flow.run(0, container=scope)
    assert got == [request]


def test_run_scope_is_cleaned_up_at_run_end() -> None:
    """A successful run's scoped services are cleaned up when it ends, seeing no exception."""
    seen: list[Connection] = []
    registry = Registry()
    registry.register_factory(Connection, _closing_connection)
    _connection_workflow("cleanup-ok", seen).run(0, container=registry)
    assert seen[0].closed_with == [None]


def test_run_scope_cleanup_sees_the_run_error() -> None:
    """A failed run's scoped services are cleaned up, seeing the run's error."""
    seen: list[Connection] = []
    registry = Registry()
    registry.register_factory(Connection, _closing_connection)
    flow = _connection_workflow("cleanup-error", seen, fail=True)
    with pytest.raises(ValueError, match="second failed"):
        flow.run(0, container=registry)
    [error] = seen[0].closed_with
    assert isinstance(error, ValueError)
    assert str(error) == "second failed"


def test_run_scope_cleanups_run_in_reverse() -> None:
    """A run's scoped services are cleaned up in reverse order of creation."""
    log: list[Any] = []
    registry = Registry()
    registry.register_factory("a", _tracked(log, "a"))
    registry.register_factory("b", _tracked(log, "b"))

    @step("use")
    def use(inp: Any, ctx: StepContext) -> None:
        ctx.resolve("a")
        ctx.resolve("b")

    @workflow("cleanup-reverse")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(use(inp))

    flow.run(0, container=registry)
    assert [e[1] for e in log if e[0] == "close"] == ["b", "a"]


def test_parallel_steps_share_the_run_scope() -> None:
    """Parallel sync steps (in threads) resolve the same scoped instance of their run."""
    seen: list[tuple[int, Connection]] = []
    registry = Registry()
    registry.register_factory(Connection, Connection)

    def make(name: str) -> Any:
        @step(name)
        def use(inp: Any, ctx: StepContext) -> None:
            time.sleep(0.01)
            seen.append((threading.get_ident(), ctx.resolve(Connection)))

        return use

    left, right = make("left"), make("right")

    @workflow("shared-scope")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(left(inp), right(inp)))

    flow.run(0, container=registry)
    assert seen[0][1] is seen[1][1]


def test_run_without_container_has_an_empty_scope() -> None:
    """Without a container, a step's `resolve` raises `ServiceNotFound`: no global container."""

    @step("lookup")
    def lookup(inp: Any, ctx: StepContext) -> None:
        ctx.resolve(Settings)

    @workflow("no-container")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(lookup(inp))

    with pytest.raises(ServiceNotFound):
        flow.run(0)


def test_runs_with_two_registries_see_their_own_services() -> None:
    """Runs given different registries resolve from their own registry."""
    got: list[str] = []

    @step("read")
    def read(inp: Any, ctx: StepContext) -> None:
        got.append(ctx.resolve("name"))

    @workflow("two-registries")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(read(inp))

    left, right = Registry(), Registry()
    left.register_value("name", "left")
    right.register_value("name", "right")
    flow.run(0, container=left)
    flow.run(0, container=right)
    assert got == ["left", "right"]
