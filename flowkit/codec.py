"""Tagged JSON for the values durable runs store: never pickle.

JSON types are stored as themselves. Everything else is a one-key object naming its type, so a
value decodes to exactly what was encoded even where no type annotation says what to expect
(a run's input, a step's output, a field typed `Any`)::

    Decimal("10.50")        {"$decimal": "10.50"}
    datetime / date / time  {"$datetime": "2026-01-02T03:04:05+00:00"} ...
    timedelta               {"$timedelta": [days, seconds, microseconds]}
    UUID                    {"$uuid": "..."}
    tuple / set / frozenset {"$tuple": [...]} / {"$set": [...]} / {"$frozenset": [...]}
    dict with other keys    {"$map": [[key, value], ...]}
    other Mapping           as a dict (an attrs converter may turn it back into its type)
    Enum member             {"$enum": "module:Class", "value": ...}
    attrs / dataclass       {"$type": "module:Class", "fields": {...}}
    flowkit.Secret          {"$secret": ...} (only when the store encrypts: `protected`)

Instances are rebuilt by cattrs' generated structuring functions (which know attrs aliases,
private attributes and keyword-only fields), fed with values this module already decoded.
Classes must be importable by their module path: not defined in a function or in `__main__`.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from flowkit.encryption import is_sealed, key_id_of
from flowkit.exceptions import EncryptionKeyMissing, NotSerializable, SecretNotProtected
from flowkit.secret import Secret

__all__ = ["Codec"]

_PLAIN = (str, int, bool, type(None))
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class Codec:
    """Encodes values to JSON text and back, exactly (one per store; thread-safe).

    Args:
        protected: The text is encrypted before it is stored (`flowkit.Encryption`), so
            `flowkit.Secret` values may be encoded; without it they raise `SecretNotProtected`.
    """

    def __init__(self, *, protected: bool = False) -> None:
        self.protected = protected
        self._classes: dict[str, type] = {}
        self._paths: dict[type, str] = {}
        # cattrs builds instances (it knows attrs aliases, private and keyword-only fields);
        # every field value is already decoded, so field types structure as themselves
        self._builder = cattrs.Converter()
        self._builder.register_structure_hook_func(lambda t: True, lambda v, t: v)
        self._constructors: dict[type, Callable[[Any, type], Any]] = {}
        self._encoders: dict[type, Callable[[Any], Any]] = {
            Decimal: lambda v: {"$decimal": str(v)},
            datetime: lambda v: {"$datetime": v.isoformat()},
            date: lambda v: {"$date": v.isoformat()},
            time: lambda v: {"$time": v.isoformat()},
            timedelta: lambda v: {"$timedelta": [v.days, v.seconds, v.microseconds]},
            uuid.UUID: lambda v: {"$uuid": str(v)},
            float: _encode_float,
            list: lambda v: [self.to_json(x) for x in v],
            tuple: lambda v: {"$tuple": [self.to_json(x) for x in v]},
            set: lambda v: {"$set": self._sorted([self.to_json(x) for x in v])},
            frozenset: lambda v: {"$frozenset": self._sorted([self.to_json(x) for x in v])},
            dict: self._encode_dict,
            Secret: self._encode_secret,
        }

    # --- public ----------------------------------------------------------------------------

    def dumps(self, value: Any, where: str | Callable[[], str] = "a value") -> str:
        """Encode `value` as JSON text.

        Args:
            value: What to encode.
            where: What is being stored, for the error message (a callable is called only then).

        Raises:
            NotSerializable: the value (or something inside it) cannot be stored.
            SecretNotProtected: it holds a `flowkit.Secret` and the codec is not `protected`.
        """
        if type(value) in _PLAIN:
            return _encode(value)
        try:
            return _encode(self.to_json(value))
        except NotSerializable as exc:
            place = where() if callable(where) else where
            raise NotSerializable(exc.value_type, place, str(exc).split(": ", 1)[-1]) from None
        except SecretNotProtected:
            raise SecretNotProtected(where() if callable(where) else where) from None

    def loads(self, text: str | None) -> Any:
        """Decode JSON text made by `dumps` (None stays None).

        Raises:
            EncryptionKeyMissing: the text is an encrypted value (the engine has no encryption).
        """
        if text is None:
            return None
        if is_sealed(text):
            raise EncryptionKeyMissing(key_id_of(text), "this engine has no encryption")
        return self.from_json(json.loads(text))

    # --- encoding ---------------------------------------------------------------------------

    def to_json(self, value: Any) -> Any:
        """The JSON-ready form of `value`."""
        cls = type(value)
        if cls in _PLAIN:
            return value
        encoder = self._encoders.get(cls)
        if encoder is None:  # first sight of the class: its encoder is made once and kept
            encoder = self._encoders[cls] = self._encoder_for(cls, value)
        return encoder(value)

    def _encoder_for(self, cls: type, value: Any) -> Callable[[Any], Any]:
        if isinstance(value, enum.Enum):
            path = self._path(cls)
            return lambda v: {"$enum": path, "value": self.to_json(v.value)}
        if attrs.has(cls):
            return self._object_encoder(cls, [a.name for a in attrs.fields(cls)])
        if dataclasses.is_dataclass(value):
            return self._object_encoder(cls, [f.name for f in dataclasses.fields(value)])
        if isinstance(value, Mapping):  # read-only mappings: stored, and read back, as dicts
            return lambda v: self._encode_dict(dict(v))
        raise NotSerializable(
            _qualname(cls), "a value", "not a JSON type, attrs class or dataclass"
        )

    def _object_encoder(self, cls: type, names: list[str]) -> Callable[[Any], Any]:
        path = self._path(cls)
        to_json = self.to_json

        def encode(value: Any) -> dict[str, Any]:
            return {"$type": path, "fields": {n: to_json(getattr(value, n)) for n in names}}

        return encode

    def _encode_secret(self, value: Secret[Any]) -> dict[str, Any]:
        if not self.protected:
            raise SecretNotProtected("a value")
        return {"$secret": self.to_json(value.reveal())}

    def _encode_dict(self, value: dict[Any, Any]) -> dict[str, Any]:
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: self.to_json(v) for k, v in value.items()}
        return {"$map": [[self.to_json(k), self.to_json(v)] for k, v in value.items()]}

    @staticmethod
    def _sorted(items: list[Any]) -> list[Any]:
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))

    def _path(self, cls: type) -> str:
        path = self._paths.get(cls)
        if path is None:
            path = f"{cls.__module__}:{cls.__qualname__}"
            if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
                raise NotSerializable(path, "a value", "classes must be importable by module path")
            if self._import(path) is not cls:
                raise NotSerializable(path, "a value", "the class is not importable by that path")
            self._paths[cls] = path
        return path

    # --- decoding ---------------------------------------------------------------------------

    def from_json(self, data: Any) -> Any:
        """Rebuild a value from its JSON-ready form."""
        if type(data) is list:
            return [self.from_json(x) for x in data]
        if type(data) is not dict:
            return data
        if not data or not next(iter(data)).startswith("$"):
            return {k: self.from_json(v) for k, v in data.items()}
        tag = next(iter(data))
        return _DECODERS[tag](self, data)

    def _decode_object(self, data: dict[str, Any]) -> Any:
        cls = self._import(data["$type"])
        fields = {k: self.from_json(v) for k, v in data["fields"].items()}
        construct = self._constructors.get(cls)
        if construct is None:
            construct = self._constructors[cls] = make_dict_structure_fn(cls, self._builder)
        return construct(fields, cls)

    def _import(self, path: str) -> Any:
        found = self._classes.get(path)
        if found is None:
            module, _, qualname = path.partition(":")
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            found = self._classes[path] = target
        return found


def _encode_float(value: float) -> Any:
    return value if math.isfinite(value) else {"$float": repr(value)}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_DECODERS: dict[str, Callable[[Codec, dict[str, Any]], Any]] = {
    "$decimal": lambda c, d: Decimal(d["$decimal"]),
    "$datetime": lambda c, d: datetime.fromisoformat(d["$datetime"]),
    "$date": lambda c, d: date.fromisoformat(d["$date"]),
    "$time": lambda c, d: time.fromisoformat(d["$time"]),
    "$timedelta": lambda c, d: timedelta(*d["$timedelta"]),
    "$uuid": lambda c, d: uuid.UUID(d["$uuid"]),
    "$float": lambda c, d: float(d["$float"]),
    "$tuple": lambda c, d: tuple(c.from_json(x) for x in d["$tuple"]),
    "$set": lambda c, d: {c.from_json(x) for x in d["$set"]},
    "$frozenset": lambda c, d: frozenset(c.from_json(x) for x in d["$frozenset"]),
    "$map": lambda c, d: {c.from_json(k): c.from_json(v) for k, v in d["$map"]},
    "$enum": lambda c, d: c._import(d["$enum"])(c.from_json(d["value"])),
    "$type": lambda c, d: c._decode_object(d),
    "$secret": lambda c, d: Secret(c.from_json(d["$secret"])),
}
