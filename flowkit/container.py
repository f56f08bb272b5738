"""Service lookup the way a web request's scope does it (modelled on svcs).

A `Registry` lives as long as the application and says how to build each service. A `Scope` is
opened per request, task or workflow run; it builds services on first use and cleans them up, in
reverse order, when it closes. Generator factories are the cleanup mechanism: the code after
`yield` runs when the scope that created the value closes, and sees the exception that closed it.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from attrs import frozen

from flowkit.exceptions import DefinitionError, ServiceNotFound, key_name

__all__ = ["Lifetime", "Registry", "Scope"]

T = TypeVar("T")
Lifetime = Literal["singleton", "scoped", "transient"]
_LIFETIMES = ("singleton", "scoped", "transient")
_MISSING: Any = object()


@frozen
class _Registration:
    factory: Callable[..., Any]
    lifetime: Lifetime
    takes_scope: bool
    is_generator: bool


class Registry:
    """The application-lifetime set of service registrations (one per app, built at its root).

    Keys are types (preferred) or strings. Two registries coexist without sharing anything.
    """

    def __init__(self) -> None:
        self._registrations: dict[object, _Registration] = {}
        self._values: dict[object, object] = {}
        self._root: Scope | None = None
        self._lock = threading.Lock()

    def register_value(self, key: object, value: object) -> None:
        """Make `resolve(key)` return `value` in every scope of this registry.

        Args:
            key: A type or a string.
            value: The object to hand out; the registry never cleans it up.
        """
        _check_key(key)
        self._registrations.pop(key, None)
        self._values[key] = value

    def register_factory(
        self, key: object, factory: Callable[..., Any], *, lifetime: Lifetime = "scoped"
    ) -> None:
        """Register how to build the service stored under `key`.

        Args:
            key: A type or a string.
            factory: Called with no argument, or with a `Scope` when it takes one parameter (the
                resolving scope, or the registry's root scope for singletons). A generator
                function yields the service; the code after `yield` is its cleanup.
            lifetime: `"singleton"` (one per registry), `"scoped"` (one per scope) or
                `"transient"` (a new one per resolve, cleaned up with the resolving scope).

        Raises:
            DefinitionError: the factory is not callable, takes more than one parameter, or the
                lifetime is unknown.
        """
        _check_key(key)
        if lifetime not in _LIFETIMES:
            raise DefinitionError(
                f"unknown lifetime {lifetime!r} for {key_name(key)}; use one of {_LIFETIMES}"
            )
        if not callable(factory):
            raise DefinitionError(f"factory for {key_name(key)} is not callable: {factory!r}")
        takes_scope = _takes_scope(key, factory)
        self._values.pop(key, None)
        self._registrations[key] = _Registration(
            factory, lifetime, takes_scope, inspect.isgeneratorfunction(factory)
        )

    def scope(self) -> Scope:
        """Open a new top-level scope (use it as a context manager, or call `close()`)."""
        return Scope(self, None)

    @property
    def root(self) -> Scope:
        """The scope singletons are built in and cleaned up from (by `close()`)."""
        root = self._root
        if root is None:
            with self._lock:
                if self._root is None:
                    self._root = Scope(self, None)
                root = self._root
        return root

    def registered_keys(self) -> list[str]:
        """Names of every registered key, sorted (for error messages and debugging)."""
        return sorted({key_name(k) for k in (*self._registrations, *self._values)})

    def close(self) -> None:
        """Run the cleanups of every singleton built so far, in reverse order of creation."""
        root, self._root = self._root, None
        if root is not None:
            root.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Scope:
    """Resolves services for one request, task or workflow run, and cleans them up at the end.

    Create one with `Registry.scope()` or, nested, with `Scope.scope()`. `resolve` is thread-safe:
    the parallel steps of one run share its scope.
    """

    def __init__(self, registry: Registry, parent: Scope | None) -> None:
        self.registry = registry
        self.parent = parent
        self._instances: dict[object, object] = {}
        self._local_values: dict[object, object] | None = None
        self._cleanups: list[Generator[Any, None, None]] = []
        self._lock = threading.RLock()
        self._closed = False

    @overload
    def resolve(self, key: type[T]) -> T: ...
    @overload
    def resolve(self, key: str) -> Any: ...
    def resolve(self, key: Any) -> Any:
        """Return the service registered under `key`, building it on first use.

        Raises:
            ServiceNotFound: nothing is registered under `key`.
        """
        found = self._instances.get(key, _MISSING)
        if found is not _MISSING:
            return found
        found = self._local_value(key)
        if found is not _MISSING:
            return found
        registry = self.registry
        found = registry._values.get(key, _MISSING)
        if found is not _MISSING:
            return found
        registration = registry._registrations.get(key)
        if registration is None:
            raise ServiceNotFound(key, self._known_keys())
        if registration.lifetime == "singleton":
            return registry.root._cached(key, registration)
        if registration.lifetime == "scoped":
            return self._cached(key, registration)
        with self._lock:
            return self._build(registration)

    def register_value(self, key: object, value: object) -> None:
        """Make `resolve(key)` return `value` in this scope and the scopes nested in it."""
        _check_key(key)
        if self._local_values is None:
            self._local_values = {}
        self._local_values[key] = value

    def scope(self) -> Scope:
        """Open a child scope: it sees this scope's local values, and has its own services."""
        return Scope(self.registry, self)

    def close(self, exc: BaseException | None = None) -> None:
        """Clean up every service this scope built, in reverse order of creation.

        Args:
            exc: The exception that ends the scope, thrown into generator factories so that
                their cleanup sees it.

        Raises:
            Exception: the error of a failing cleanup (an `ExceptionGroup` when several fail),
                after every cleanup ran, unless `exc` is already propagating.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cleanups, self._cleanups = self._cleanups, []
            self._instances.clear()
        errors = [e for gen in reversed(cleanups) if (e := _finish(gen, exc)) is not None]
        if errors and exc is None:
            if len(errors) == 1:
                raise errors[0]
            raise ExceptionGroup("several service cleanups failed", errors)

    def __enter__(self) -> Scope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exc)

    def _cached(self, key: object, registration: _Registration) -> Any:
        with self._lock:
            found = self._instances.get(key, _MISSING)
            if found is _MISSING:
                found = self._build(registration)
                self._instances[key] = found
            return found

    def _build(self, registration: _Registration) -> Any:
        if self._closed:
            raise RuntimeError("this scope is closed; open a new one to resolve services")
        factory = registration.factory
        made = factory(self) if registration.takes_scope else factory()
        if registration.is_generator:
            gen: Generator[Any, None, None] = made
            made = next(gen)
            self._cleanups.append(gen)
        return made

    def _local_value(self, key: object) -> Any:
        scope: Scope | None = self
        while scope is not None:
            values = scope._local_values
            if values is not None and key in values:
                return values[key]
            scope = scope.parent
        return _MISSING

    def _known_keys(self) -> list[str]:
        names = set(self.registry.registered_keys())
        scope: Scope | None = self
        while scope is not None:
            names.update(key_name(k) for k in scope._local_values or ())
            scope = scope.parent
        return sorted(names)


def _finish(gen: Generator[Any, None, None], exc: BaseException | None) -> Exception | None:
    """Run one generator cleanup; return the error it raised (not the one thrown into it)."""
    try:
        if exc is None or not isinstance(exc, Exception):
            next(gen)
        else:
            gen.throw(exc)
    except StopIteration:
        return None
    except Exception as err:
        return None if err is exc else err
    code = getattr(gen, "gi_code", None)
    return RuntimeError(f"service factory {getattr(code, 'co_qualname', gen)} yielded twice")


def _check_key(key: object) -> None:
    if not isinstance(key, (type, str)):
        raise DefinitionError(f"service keys are types or strings, not {key!r}")


def _takes_scope(key: object, factory: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise DefinitionError(
            f"factory for {key_name(key)} takes {len(required)} parameters; "
            "a factory takes nothing or the resolving scope"
        )
    return len(required) == 1
