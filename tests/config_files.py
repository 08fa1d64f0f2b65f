"""The repository's config files and launch scripts (files, not importable modules), and dotted-field overrides."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_module(path, name):
  """Executes the Python file at `path` as a fresh module called `name`."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(name):
  """Returns `get_config()` of `configs/{name}.py`."""
  return load_module(ROOT / "configs" / f"{name}.py", name).get_config()


def set_fields(config, fields):
  """Sets each dotted field of `fields` (`{"eval.ks": "1,x"}`) on `config` and returns it."""
  for path, value in fields.items():
    node = config
    *parents, leaf = path.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config
