"""Values of :class:`audit.config.ScoringConfig` fields: parsing ``--set`` text, writing TOML
literals, and checking a value against its field's kind and range (pure)."""

from __future__ import annotations

import tomllib
from typing import Any

from audit import constants as C


def parse(text: str) -> Any:
    """A ``--set`` value: a TOML value where it parses as one (``0.4``, ``5``, ``["pca"]``),
    else the text itself (``abc``, ``pca,umap``, ``auto``); the field's check says the rest."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def toml_value(value: Any) -> str:
    """A TOML literal of a float, int or tuple of strings."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def checked(name: str, meta: Any, value: Any) -> Any:
    """``value`` converted to the field's kind and checked against its range."""
    kind = meta["kind"]
    if kind == "methods":
        return _methods(name, value)
    if kind == "optional_int" and (value is None or (
            isinstance(value, str) and value.strip().lower() in ("", "none", "auto"))):
        return None
    number = _number(name, value, integer=kind != "float")
    lo, hi, lo_open = meta["bounds"]
    if (lo is not None and (number < lo or (lo_open and number == lo))) or (
            hi is not None and number > hi):
        if hi is None:
            span = f">= {lo}"
        else:
            span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be {'in ' if hi is not None else ''}{span}, "
                         f"got {value!r}")
    return number


def _number(name: str, value: Any, *, integer: bool) -> int | float:
    """``value`` as an int (integral numbers only) or a float; ValueError naming ``name``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if integer and ok and float(value).is_integer():
        return int(value)
    if not integer and ok and value == value and abs(value) != float("inf"):
        return float(value)
    raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")


def _methods(name: str, value: Any) -> tuple[str, ...]:
    """Projection methods from a tuple/list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise ValueError(f"{name} must be a list of projection methods, got {value!r}")
    methods = tuple(v.strip() for v in items if v.strip())
    bad = [m for m in methods if m not in C.PROJECTION_METHODS]
    if bad:
        raise ValueError(f"{name}: unknown projection method(s) {bad}; expected "
                         f"{C.PROJECTION_METHODS}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"{name}: a projection method is listed twice in {list(methods)}")
    return methods
