"""Prefixed, time-sortable ids (``pay_01J9Z3...``): a ULID after a readable prefix.

The 26-character suffix is a ULID in Crockford base32: 48 bits of milliseconds, then 80 bits that
are random for the first id of a millisecond and incremented for the next ones, so ids made by
one factory sort in creation order even within a millisecond.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["PREFIXES", "IdFactory"]

PREFIXES = {
    "PaymentCollection": "pay_col",
    "PaymentSession": "payses",
    "Payment": "pay",
    "Capture": "capt",
    "Refund": "ref",
    "RefundReason": "refr",
    "AccountHolder": "acchld",
}
"""The id prefix of each record kind (the id is ``{prefix}_{ulid}``)."""

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]  # two digits per lookup


def _encode(value: int, length: int) -> str:
    """`value` as `length` Crockford base32 digits, most significant first."""
    head = _ALPHABET[(value >> (5 * (length - 1))) & 31] if length % 2 else ""
    pairs = range(10 * (length // 2 - 1), -1, -10)
    return head + "".join([_PAIRS[(value >> shift) & 1023] for shift in pairs])


class IdFactory:
    """Makes monotonic prefixed ids; thread-safe. One per module instance, never global.

    Args:
        clock_ms: Milliseconds since the epoch (injectable for tests).
        random_bits: Returns a random integer of the given number of bits.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int] | None = None,
        random_bits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._random_bits = random_bits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, kind: str) -> str:
        """Return a fresh id for a record kind.

        Args:
            kind: A key of `PREFIXES`, e.g. ``"Payment"``.

        Returns:
            ``"{prefix}_{ulid}"``, greater than every id this factory returned before.
        """
        prefix = PREFIXES[kind]
        with self._lock:
            now = self._clock_ms()
            if now <= self._last_ms:
                self._last_random += 1
                if self._last_random >> _RANDOM_BITS:  # overflow: borrow the next millisecond
                    self._last_ms += 1
                    self._last_random = 0
            else:
                self._last_ms = now
                self._last_random = self._random_bits(_RANDOM_BITS - 1)  # room to increment
            ulid = (self._last_ms << _RANDOM_BITS) | self._last_random
        return f"{prefix}_{_encode(ulid, 26)}"
