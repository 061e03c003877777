"""The one TOML writer: settings files for runs we start (eval-stream, tests) and bundle.toml (engines.bundle).

Python reads TOML (tomllib) but has no writer; this covers what the project writes: tables of
scalars, arrays and inline tables. Strings are TOML basic strings, escaped so that any text
(newlines, quotes, control characters) reads back as written.
"""
from __future__ import annotations

import re
from pathlib import Path

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:  # TOML forbids them raw in basic strings
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: object) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def toml_value(value: object) -> str:
    """One TOML value: bool, int, float (nan and inf included), string, array (list/tuple), inline table (dict).

    Anything else is written as its str() (e.g. a Path)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # 'nan', 'inf', '-inf' and shortest round-trip digits are TOML too
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in value.items()) + " }"
    return _string(str(value))


def dumps(doc: dict) -> str:
    """TOML text of {key: value} and {section: {key: value}} (a dict at top level is a [section] table)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            if lines:
                lines.append("")
            lines.append(f"[{toml_key(section)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_toml(path: str | Path, doc: dict) -> Path:
    """Write `dumps(doc)` to `path` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(dumps(doc), encoding="utf-8")
    return path
