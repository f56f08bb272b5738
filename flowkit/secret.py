"""`Secret[T]`: a value a run needs in memory that must never be stored or logged in clear.

A durable engine stores a `Secret` only encrypted (`Engine(..., encryption=...)`); an engine
without encryption refuses to start a run carrying one (`SecretNotProtected`) and stores
nothing. `repr()`, `str()` and `flowkit.logging`'s processors show it as ``Secret(***)``.
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar

__all__ = ["Secret"]

T = TypeVar("T")


class Secret(Generic[T]):
    """Wraps a value that must never be stored or logged in clear.

    Two secrets are equal when their values are. Secrets refuse to be pickled.

    Args:
        value: The secret value (anything the codec can store).
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """The wrapped value.

        Returns:
            What the secret was made with.
        """
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "Secret(***)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return bool(self._value == other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a flowkit.Secret cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("a flowkit.Secret cannot be pickled")
