"""Typed, range-checked settings fields: one checker for every settings dataclass (config sections, policy)."""
from __future__ import annotations

from dataclasses import field
from typing import Any

from stream.core.errors import ConfigError

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def setting(default, *, lo=None, hi=None, choices=None):
    """A dataclass field with its allowed range or choices attached."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices})


def check_setting(section: str, key: str, spec, value: Any, where: str) -> Any:
    """Validate one value against its dataclass field; ConfigError names the key, the value and what is allowed."""
    want = spec.type if isinstance(spec.type, type) else _TYPES[spec.type]
    name = f"{where}: [{section}] {key} = {value!r}"
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {want.__name__}")
    meta = spec.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{name}: expected one of {', '.join(meta['choices'])}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(f"{name}: must be >= {meta['lo']}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(f"{name}: must be <= {meta['hi']}")
    return value
