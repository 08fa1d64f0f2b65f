"""Config validation machinery: value rules, unknown fields, wrong types, each error naming its field.

Each config section module (`run`, `sampling`, `training`, `ssd`, `self_distill`) declares its defaults and
the `Check`s of the fields it owns; `ssd_jax.config.validate` walks them all. Nothing registers itself
globally, so importing a section has no side effects.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """A config names an unknown field, has a wrong type, or an impossible value."""


@dataclasses.dataclass(frozen=True)
class Check:
  """One value rule: `ok(value)` must hold for the field at `path`."""

  path: str
  ok: Callable[[Any], bool]
  expected: str


def leaves(c: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
  """(dotted path, value) of every non-section field."""
  for key, value in c.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from leaves(value, path + ".")
    else:
      yield path, value


def get(c: ml_collections.ConfigDict, path: str) -> Any:
  for part in path.split("."):
    c = c[part]
  return c


def _type_ok(default: Any, value: Any) -> bool:
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(default, bool) and isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  return isinstance(value, type(default))


def schema_errors(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> list[str]:
  """Unknown fields and wrong types, each message naming the field."""
  errors = []
  known = dict(leaves(schema))
  given = dict(leaves(config))
  for path, value in given.items():
    if path not in known:
      close = difflib.get_close_matches(path, known, n=1)
      hint = f" (did you mean '{close[0]}'?)" if close else ""
      errors.append(f"unknown field '{path}'{hint}")
    elif not _type_ok(known[path], value):
      errors.append(f"field '{path}' must be {type(known[path]).__name__}, got {type(value).__name__} {value!r}")
  for path in known:
    if path not in given:
      errors.append(f"field '{path}' is missing (start config files from ssd_jax.config.base_config())")
  return errors


def value_errors(config: ml_collections.ConfigDict, checks: Iterable[Check]) -> list[str]:
  """The checks that fail, each naming its field and what it expects."""
  errors = []
  for check in checks:
    try:
      value = get(config, check.path)
    except (KeyError, AttributeError):
      continue
    if not check.ok(value):
      errors.append(f"field '{check.path}' = {value!r} is invalid: expected {check.expected}")
  return errors


def comma_list(text: str) -> tuple[str, ...]:
  """The non-empty, stripped items of a comma-separated field."""
  return tuple(part.strip() for part in text.split(",") if part.strip())


def int_list_ok(text: str) -> bool:
  parts = comma_list(text)
  return bool(parts) and all(p.isdigit() and int(p) >= 1 for p in parts)


def raise_if(errors: list[str]) -> None:
  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
