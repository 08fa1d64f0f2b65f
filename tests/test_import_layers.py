"""The layering holds: no import cycle inside ssd_jax, and no module imports a layer above its own.

Layers, bottom up (a package may import its own modules and any lower layer):

  sharding, distributed, host_platform, process_group, collective_bytes, compile_oom, atomic_write
  < kernels, data < model, tasks, evals < sampling, train < onpolicy < config < pipeline < stages < main, convert
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "ssd_jax"
RANK = {
  "sharding": 0,
  "distributed": 0,
  "host_platform": 0,
  "collective_bytes": 0,
  "compile_oom": 0,
  "atomic_write": 0,
  "process_group": 0,
  "kernels": 1,
  "data": 1,
  "model": 2,
  "tasks": 2,
  "evals": 2,
  "sampling": 3,
  "train": 3,
  "onpolicy": 4,
  "config": 5,
  "pipeline": 6,
  "stages": 7,
  "main": 8,
  "convert": 8,
}


def _modules() -> dict[str, pathlib.Path]:
  modules = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    modules[name] = path
  return modules


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
  """The ssd_jax modules `name` imports (`from pkg import mod` counts as importing `pkg.mod`)."""
  package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    else:
      continue
    found.update(t for t in targets if t in modules and t != name)
  return found


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "main"


@pytest.fixture(scope="module")
def graph():
  modules = _modules()
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_package_has_a_layer(graph):
  assert {_layer(m) for m in graph if m != "ssd_jax"} <= set(RANK)


def _allowed(src: str, dst: str) -> bool:
  """Within one package, or down to a lower layer (the `ssd_jax` package itself imports nothing)."""
  a, b = _layer(src), _layer(dst)
  return a == b or RANK[b] < RANK[a]


def test_no_module_imports_a_layer_above_its_own(graph):
  upward = [f"{src} -> {dst}" for src, targets in graph.items() for dst in targets if not _allowed(src, dst)]
  assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles(graph):
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  cycles = []

  def visit(node, path):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, "\n".join(cycles)
