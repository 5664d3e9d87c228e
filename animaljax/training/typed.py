"""Plain data (a ConfigDict's `to_dict()`, a saved config.json) -> nested frozen dataclasses, strictly typed.

Generic: knows nothing of animaljax's sections. `build(cls, values, key, strict)` builds `cls` from a mapping,
coercing each value to its field's annotation (int -> float, list -> tuple), recursing into dataclass-typed
fields, and refusing unknown keys (naming the valid ones, closest first) unless `strict=False`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any


def closest_first(name: str, valid: list[str]) -> list[str]:
  """`valid` with the close matches of `name` first."""
  close = difflib.get_close_matches(name, valid, n=len(valid), cutoff=0.5) if valid else []
  return close + [v for v in valid if v not in close]


def coerce(key: str, value: Any, hint: Any) -> Any:
  """`value` as the field's type `hint` (int -> float, list -> tuple); ValueError naming `key` otherwise."""
  origin = typing.get_origin(hint)
  if origin is tuple:
    (item, _) = typing.get_args(hint)
    if not isinstance(value, list | tuple):
      raise ValueError(f"{key} must be a list, got {value!r}")
    return tuple(coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
  if hint is bool:
    if not isinstance(value, bool):
      raise ValueError(f"{key} must be True or False, got {value!r}")
    return value
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
      raise ValueError(f"{key} must be an integer, got {value!r}")
    return int(value)
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, int | float):
      raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)
  if hint is str:
    if not isinstance(value, str):
      raise ValueError(f"{key} must be a string, got {value!r}")
    return value
  raise TypeError(f"{key}: unsupported field type {hint!r}")  # a bug in the schema, not the user's


def build(cls: type, values: Mapping[str, Any], key: str = "", *, strict: bool = True):
  """`cls(**values)` with every value coerced (see the module docstring); missing keys keep their defaults.

  Args:
    cls: a dataclass whose fields are bool/int/float/str, tuples of those, or dataclasses of the same kind.
    values: the data; key: its dotted place, for messages ("" at the top).
    strict: refuse keys `cls` does not have; False ignores them.
  """
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = [k for k in values if k not in names]
  if unknown and strict:
    where = f"{key}." if key else ""
    valid = f"valid keys of {key}" if key else "valid keys"
    raise ValueError(
      f"unknown config key {where}{unknown[0]}; {valid}: {', '.join(closest_first(unknown[0], names))}"
    )
  kwargs = {}
  for name in names:
    if name not in values:
      continue
    path, hint = f"{key}.{name}" if key else name, hints[name]
    if dataclasses.is_dataclass(hint):
      if not isinstance(values[name], Mapping):
        raise ValueError(f"config.{path} must be a section, got {values[name]!r}")
      kwargs[name] = build(hint, values[name], path, strict=strict)
    else:
      kwargs[name] = coerce(path, values[name], hint)
  return cls(**kwargs)
