"""Refusing raw card numbers in session data and context (PCI DSS: never store a PAN).

A card number is a run of 13 to 19 digits, groups of them separated by single spaces or
dashes allowed (``4242 4242 4242 4242``, ``4242-4242-4242-4242``), that passes the Luhn check.
Any such run inside a string, or an integer of that form, is refused; a digit string that fails
Luhn (an order reference, a phone number) is fine. Keys are checked like values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from payment.exceptions import InvalidData

__all__ = ["CARD_REFUSAL", "has_card_number", "is_luhn_valid", "refuse_card_numbers"]

CARD_REFUSAL = "pass a payment method token, never card numbers"
"""The reason of the `InvalidData` raised for a value holding a card number."""

_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_SEPARATOR = re.compile(r"[ -]")
_MAX_DEPTH = 64


def is_luhn_valid(digits: str) -> bool:
    """True when a string of ASCII digits passes the Luhn checksum.

    Args:
        digits: ASCII digits only.

    Returns:
        Whether the last digit is the Luhn check digit of the others.
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _run_holds_card(run: str) -> bool:
    groups = _SEPARATOR.split(run)
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and is_luhn_valid(digits):
                return True
    return False


def _text_holds_card(text: str) -> bool:
    if len(text) < 13:
        return False
    return any(_run_holds_card(m.group()) for m in _RUN.finditer(text))


def has_card_number(value: Any, _depth: int = 0) -> bool:
    """True when `value` (a JSON-like value: mappings, lists, strings, numbers) holds a card
    number anywhere, keys included.

    Args:
        value: What to search.

    Returns:
        Whether a Luhn-valid run of 13 to 19 digits was found.
    """
    if isinstance(value, str):
        return _text_holds_card(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _text_holds_card(str(abs(value))) if abs(value) >= 10**12 else False
    if _depth > _MAX_DEPTH:
        return False
    if isinstance(value, Mapping):
        return any(
            has_card_number(k, _depth + 1) or has_card_number(v, _depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_card_number(item, _depth + 1) for item in value)
    return False


def refuse_card_numbers(value: Any, field: str) -> None:
    """Raise when `value` holds a card number (see the module docstring).

    Args:
        value: A session's data or context (or any JSON-like value).
        field: The argument name shown in the error (``"data"``, ``"context"``).

    Raises:
        InvalidData: the value holds a card number (the message never quotes it).
    """
    if has_card_number(value):
        raise InvalidData(field, CARD_REFUSAL)
