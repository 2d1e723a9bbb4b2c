"""Command-line overrides of an experiment file (`--set section.key=value`), applied to its TOML tables.

The result is TOML text again, so the run stores (and a resume or the analysis re-reads) exactly the config that
trained, and the schema checks an override like any key of the file."""

from __future__ import annotations

import copy
import datetime
import math
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from scaling.errors import UserError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_value(text: str) -> Any:
    """A TOML value (8, 1e-2, true, [1, 2], {max = 64}, "he"); anything else, a date included, is taken as a
    bare string (no key of the schema holds a date)."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
    return text if isinstance(value, datetime.date | datetime.time) else value


def apply(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the file's tables with each `section.key[.subkey]=value` set in order (the last one wins)."""
    tables = copy.deepcopy(raw)
    for item in overrides:
        path, sep, value = item.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) < 2 or not all(_BARE_KEY.fullmatch(k) for k in keys):
            raise UserError(f"--set {item}", "expected section.key=value, e.g. --set search.seeds=8")
        table = tables
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise UserError(f"--set {item}", f"{key} is a value in the experiment file, not a table")
        table[keys[-1]] = parse_value(value.strip())
    return tables


def dump(tables: dict[str, Any], header: str = "") -> str:
    """TOML text for tables of sections (values: strings, numbers, booleans, lists and inline tables of them)."""
    lines = [f"# {line}" for line in header.splitlines()]
    # A value outside every section (the schema refuses it, naming it) must come before the first [section].
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in tables.items() if not isinstance(v, dict))
    for section, table in tables.items():
        if isinstance(table, dict):
            lines.append(f"\n[{_key(section)}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in table.items())
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as it is (UTF-8)."""
    escaped = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    return '"' + "".join(escaped.get(c, f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                         for c in text) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.date | datetime.time):  # a TOML date or time in the file, written back as one
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise UserError("--set", f"cannot write {value!r} back as TOML")
