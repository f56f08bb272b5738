"""`Encryption`: the keys a durable engine encrypts stored values with (AES-GCM).

Every durable value (run inputs and outputs, step outputs, compensate inputs, errors, signal
payloads) leaves the codec as JSON text and is sealed here before it reaches the store::

    fk1:<key id>:<base64url(12-byte nonce + AES-GCM ciphertext and tag)>

The header is the associated data, so a blob cannot be moved under another key id. Nonces
follow NIST SP 800-38D's deterministic construction: 8 random bytes drawn per `Encryption`
(and again after a fork, and every 2**32 values) and a 4-byte counter, so no two values ever
sealed under one key share a nonce, without a system call per value. Each blob
names its key: rotate by adding a new key and making it the primary; values written under the
old key are still read while it is held. JSON text never starts with ``fk1:``, so clear values
written before encryption was turned on are still read as they are.

Needs the `cryptography` package (the `crypto` extra: ``pip install 'flowkit[crypto]'``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from itertools import count
from pathlib import Path

from flowkit.exceptions import DefinitionError, EncryptionKeyMissing

__all__ = ["PREFIX", "Encryption", "is_sealed", "key_id_of"]

PREFIX = "fk1:"
"""How every encrypted value starts (format version 1)."""

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE = 12
_FIXED = 8  # the nonce's random field; the other 4 bytes count
_COUNTER_END = 2**32
# base64url is standard base64 with "-_" for "+/": binascii and bytes.translate do it directly,
# without the two Python calls of base64.urlsafe_b64encode/-decode on every value
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")

_Crypt = Callable[[bytes, bytes, bytes], bytes]
"""`AESGCM.encrypt` or `.decrypt`, bound to a key: (nonce, data, associated data) -> bytes."""


def is_sealed(text: str | None) -> bool:
    """True when `text` is a value `Encryption.seal` made.

    Args:
        text: A stored value (JSON text or a sealed blob), or None.

    Returns:
        Whether it starts with the `PREFIX`.
    """
    return text is not None and text.startswith(PREFIX)


def key_id_of(blob: str) -> str:
    """The key id a sealed blob names (the text between the prefix and the next colon).

    Args:
        blob: A value `Encryption.seal` made.

    Returns:
        Its key id.
    """
    return blob[len(PREFIX) :].split(":", 1)[0]


class Encryption:
    """The keys stored values are encrypted with, and which one encrypts new values.

    Args:
        keys: AES keys (16, 24 or 32 bytes; make one with `Encryption.new_key()`) by key id
            (1 to 64 letters, digits, ``.``, ``_`` or ``-``).
        primary: The id of the key new values are encrypted with.

    Raises:
        DefinitionError: no keys, a malformed key id or key, or a primary not among the keys;
            or the `cryptography` package is not installed.
    """

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:  # pragma: no cover - the crypto extra is part of dev
            raise DefinitionError(
                "flowkit.Encryption needs the cryptography package: pip install 'flowkit[crypto]'"
            ) from None
        if not keys:
            raise DefinitionError("Encryption needs at least one key")
        ciphers = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise DefinitionError(
                    f"key ids are 1 to 64 letters, digits, '.', '_' or '-'; not {key_id!r}"
                )
            if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
                raise DefinitionError(f"key {key_id!r} must be 16, 24 or 32 bytes")
            ciphers[key_id] = AESGCM(key)
        if primary not in ciphers:
            raise DefinitionError(f"primary key {primary!r} is not among the keys")
        # made once, not per value: each key id's decrypt and the header bytes it authenticates
        self._openers: dict[str, tuple[_Crypt, bytes]] = {
            key_id: (cipher.decrypt, f"{PREFIX}{key_id}:".encode())
            for key_id, cipher in ciphers.items()
        }
        self.primary = primary
        self._header = f"{PREFIX}{primary}:"
        self._aad = self._header.encode()
        self._encrypt: _Crypt = ciphers[primary].encrypt
        self._reseed_lock = threading.Lock()
        self._reseed()
        _LIVE.add(self)

    def _reseed(self) -> None:
        """A fresh random field and a counter from zero (at start, after a fork, on wrap); one
        attribute holds both, so a thread never pairs a number with another seed's field."""
        self._seed = (os.urandom(_FIXED), count())

    def _nonce(self) -> bytes:
        fixed, counter = self._seed
        number = next(counter)  # atomic under the GIL: threads never share a number
        if number >= _COUNTER_END:
            with self._reseed_lock:
                if self._seed[1] is counter:  # no other thread reseeded meanwhile
                    self._reseed()
            return self._nonce()
        return fixed + number.to_bytes(4, "big")

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the keys held."""
        return frozenset(self._openers)

    def __repr__(self) -> str:
        return f"Encryption(keys={sorted(self._openers)}, primary={self.primary!r})"

    @staticmethod
    def new_key() -> bytes:
        """A fresh random 256-bit key.

        Returns:
            32 bytes from the operating system's random source.
        """
        return os.urandom(32)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> Encryption:
        """Keys read from a JSON file: ``{"primary": "k2", "keys": {"k1": "<base64>", ...}}``.

        Args:
            path: The file (keep it out of the database's backups).

        Returns:
            The encryption it describes.

        Raises:
            DefinitionError: the file is not of that form.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            primary = data["primary"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise DefinitionError(
                f"key file {os.fspath(path)!r} is not of the form "
                '{"primary": ID, "keys": {ID: BASE64}} '
                f"({type(exc).__name__})"
            ) from None
        return cls(keys, primary)

    def seal(self, text: str) -> str:
        """Encrypt `text` under the primary key.

        Args:
            text: A value as the codec encoded it.

        Returns:
            ``fk1:<key id>:`` and the base64url nonce and ciphertext.
        """
        nonce = self._nonce()  # unique for every blob: GCM must never repeat one per key
        blob = nonce + self._encrypt(nonce, text.encode(), self._aad)
        body = binascii.b2a_base64(blob, newline=False).translate(_TO_URLSAFE)
        return self._header + body.decode("ascii")

    def open(self, text: str) -> str:
        """Decrypt a value `seal` made (text that is not sealed is returned as it is).

        Args:
            text: A stored value.

        Returns:
            The codec's text.

        Raises:
            EncryptionKeyMissing: its key is not held, or the blob does not decrypt with it.
        """
        if not text.startswith(PREFIX):
            return text
        key_id, sep, body = text[len(PREFIX) :].partition(":")
        opener = self._openers.get(key_id)
        if opener is None or not sep:
            raise EncryptionKeyMissing(key_id, f"this engine holds {sorted(self._openers)}")
        decrypt, aad = opener
        try:
            raw = binascii.a2b_base64(body.encode("ascii").translate(_FROM_URLSAFE))
            plain = decrypt(raw[:_NONCE], raw[_NONCE:], aad)
        except Exception:  # InvalidTag, bad base64: another key under the same id, or damage
            raise EncryptionKeyMissing(
                key_id, "the value does not decrypt with the key held under that id"
            ) from None
        return plain.decode()


# Every live `Encryption` draws a new random field in a forked child: parent and child would
# otherwise count through the same nonces under the same key.
_LIVE: weakref.WeakSet[Encryption] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for encryption in list(_LIVE):
        encryption._reseed_lock = threading.Lock()
        encryption._reseed()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed_after_fork)
