"""Unit tests of `flowkit.container`: registrations, scopes, cleanups and their errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import DefinitionError, Registry, Scope, ServiceNotFound


class Service:
    """A service type used as a key."""


def _generator(log: list[str], name: str, *, fail: bool = False) -> Any:
    def factory() -> Iterator[str]:
        log.append(f"open {name}")
        yield name
        log.append(f"close {name}")
        if fail:
            raise OSError(f"cleanup of {name} failed")

    return factory


def test_default_lifetime_is_scoped() -> None:
    """A factory registered without a lifetime is scoped."""
    registry = Registry()
    registry.register_factory(Service, Service)
    with registry.scope() as one, registry.scope() as two:
        assert one.resolve(Service) is one.resolve(Service)
        assert one.resolve(Service) is not two.resolve(Service)


def test_register_value_replaces_a_factory_and_back() -> None:
    """Registering a key again replaces its previous registration, value or factory."""
    registry = Registry()
    registry.register_factory("k", lambda: "from factory")
    registry.register_value("k", "value")
    with registry.scope() as scope:
        assert scope.resolve("k") == "value"
    registry.register_factory("k", lambda: "factory again")
    with registry.scope() as scope:
        assert scope.resolve("k") == "factory again"


def test_registered_keys_are_sorted_names() -> None:
    """`registered_keys()` lists type names and quoted string keys, sorted."""
    registry = Registry()
    registry.register_value("zeta", 1)
    registry.register_factory(Service, Service)
    registry.register_value("alpha", 2)
    assert registry.registered_keys() == ["'alpha'", "'zeta'", "Service"]


def test_values_are_never_cleaned_up() -> None:
    """A registered value is handed out as is; closing scopes and the registry leaves it."""
    registry = Registry()
    log: list[str] = []
    registry.register_value("gen", _generator(log, "gen"))
    with registry.scope() as scope:
        assert callable(scope.resolve("gen"))
    registry.close()
    assert log == []


def test_factory_with_only_optional_parameters_gets_no_scope() -> None:
    """A factory whose parameters all have defaults is called with no argument."""
    registry = Registry()
    registry.register_factory("k", lambda value="default": value)
    with registry.scope() as scope:
        assert scope.resolve("k") == "default"


def test_scope_local_values_are_seen_by_children_not_siblings() -> None:
    """`scope.register_value` is visible in that scope and nested ones only."""
    registry = Registry()
    with registry.scope() as parent, registry.scope() as sibling:
        parent.register_value("user", "ada")
        child = parent.scope()
        assert child.resolve("user") == "ada"
        with pytest.raises(ServiceNotFound):
            sibling.resolve("user")
        child.close()


def test_service_not_found_lists_scope_values_too() -> None:
    """`ServiceNotFound` lists scope-local keys among the registered ones."""
    registry = Registry()
    registry.register_value("global", 1)
    with registry.scope() as scope:
        scope.register_value("local", 2)
        with pytest.raises(ServiceNotFound) as caught:
            scope.resolve("missing")
    assert caught.value.registered == ("'global'", "'local'")
    assert "'missing'" in str(caught.value)


def test_service_not_found_on_an_empty_registry_says_nothing_is_registered() -> None:
    """With nothing registered, the message says so."""
    with Registry().scope() as scope, pytest.raises(ServiceNotFound, match="nothing"):
        scope.resolve(Service)


def test_closed_scope_refuses_to_build() -> None:
    """Resolving a service to build in a closed scope raises `RuntimeError`."""
    registry = Registry()
    registry.register_factory(Service, Service)
    scope = registry.scope()
    scope.close()
    with pytest.raises(RuntimeError, match="closed"):
        scope.resolve(Service)


def test_close_is_idempotent() -> None:
    """Closing a scope twice runs its cleanups once."""
    log: list[str] = []
    registry = Registry()
    registry.register_factory("g", _generator(log, "g"))
    scope = registry.scope()
    scope.resolve("g")
    scope.close()
    scope.close()
    assert log == ["open g", "close g"]


def test_cleanup_error_is_raised_after_every_cleanup_ran() -> None:
    """A failing cleanup does not stop the others; its error is raised at the end."""
    log: list[str] = []
    registry = Registry()
    registry.register_factory("first", _generator(log, "first"))
    registry.register_factory("second", _generator(log, "second", fail=True))
    scope = registry.scope()
    scope.resolve("first")
    scope.resolve("second")
    with pytest.raises(OSError, match="second"):
        scope.close()
    assert log[-2:] == ["close second", "close first"]


def test_several_cleanup_errors_are_grouped() -> None:
    """Several failing cleanups raise an `ExceptionGroup` of their errors."""
    log: list[str] = []
    registry = Registry()
    registry.register_factory("first", _generator(log, "first", fail=True))
    registry.register_factory("second", _generator(log, "second", fail=True))
    scope = registry.scope()
    scope.resolve("first")
    scope.resolve("second")
    with pytest.raises(ExceptionGroup) as caught:
        scope.close()
    assert len(caught.value.exceptions) == 2


def test_cleanup_errors_do_not_mask_the_closing_exception() -> None:
    """When a scope closes because of an error, that error propagates, not a cleanup's."""
    log: list[str] = []
    registry = Registry()
    registry.register_factory("g", _generator(log, "g", fail=True))

    def failing_request() -> None:
        with registry.scope() as scope:
            scope.resolve("g")
            raise KeyError("request")

    with pytest.raises(KeyError, match="request"):
        failing_request()


def test_generator_yielding_twice_is_reported() -> None:
    """A generator factory that yields twice is a `RuntimeError` at cleanup, naming it."""

    def twice() -> Iterator[int]:
        yield 1
        yield 2

    registry = Registry()
    registry.register_factory("twice", twice)
    scope = registry.scope()
    scope.resolve("twice")
    with pytest.raises(RuntimeError, match="twice"):
        scope.close()


def test_registry_is_a_context_manager_closing_singletons() -> None:
    """`with Registry() as r:` runs the singletons' cleanups on exit."""
    log: list[str] = []
    with Registry() as registry:
        registry.register_factory("s", _generator(log, "s"), lifetime="singleton")
        with registry.scope() as scope:
            scope.resolve("s")
    assert log == ["open s", "close s"]


def test_singleton_cleanups_run_in_reverse() -> None:
    """`registry.close()` cleans singletons up in reverse order of creation."""
    log: list[str] = []
    registry = Registry()
    registry.register_factory("first", _generator(log, "first"), lifetime="singleton")
    registry.register_factory("second", _generator(log, "second"), lifetime="singleton")
    with registry.scope() as scope:
        scope.resolve("first")
        scope.resolve("second")
    registry.close()
    assert log == ["open first", "open second", "close second", "close first"]


def test_root_scope_is_stable_until_close() -> None:
    """`registry.root` is one scope until `close()`; afterwards singletons are rebuilt."""
    registry = Registry()
    registry.register_factory(Service, Service, lifetime="singleton")
    root = registry.root
    assert registry.root is root
    first = root.resolve(Service)
    registry.close()
    assert registry.root is not root
    assert registry.root.resolve(Service) is not first


def test_scope_keeps_its_registry_and_parent() -> None:
    """A scope knows its registry and, when nested, its parent."""
    registry = Registry()
    top = registry.scope()
    child = top.scope()
    assert isinstance(child, Scope)
    assert (top.registry, top.parent) == (registry, None)
    assert (child.registry, child.parent) == (registry, top)


def test_factory_with_two_required_parameters_is_refused() -> None:
    """A factory needing two arguments is a `DefinitionError` naming the key."""
    with pytest.raises(DefinitionError, match="Service"):
        Registry().register_factory(Service, lambda a, b: None)
