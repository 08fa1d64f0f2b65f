"""Problem families: known solutions pass, wrong ones fail, every family has forks and locks."""

import ast
import builtins
import re

import pytest

from ssd_jax.tasks import builtin, families

SEEDS = range(40)
REGISTRY = builtin.registry()


def run_tests(code, tests):
  """True when `code` passes every assert; plain exec, since all code here is our own."""
  namespace = {}
  exec(code, namespace)  # pylint: disable=exec-used
  try:
    for test in tests:
      exec(test, namespace)  # pylint: disable=exec-used
  except AssertionError:
    return False
  return True


class _AlphaRename(ast.NodeTransformer):
  """Renames identifiers in order of appearance, so `out`/`result` renames are not counted as forks."""

  def __init__(self):
    self.names = {}

  def _canon(self, name):
    return self.names.setdefault(name, f"v{len(self.names)}")

  def visit_Name(self, node):
    if not hasattr(builtins, node.id) and node.id != "math":
      node.id = self._canon(node.id)
    return node

  def visit_arg(self, node):
    node.arg = self._canon(node.arg)
    return node


def normalised(code):
  tree = ast.parse(code)
  tree.body[0].name = "f"
  return ast.dump(_AlphaRename().visit(tree))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_known_solutions_pass_and_wrong_ones_fail(name):
  for seed in SEEDS:
    instance = REGISTRY[name].instantiate(seed)
    assert 3 <= len(instance.tests) <= 5, instance.tests
    for code in instance.solutions:
      assert run_tests(code, instance.tests), (instance.question, code)
    assert instance.wrong_solutions
    for code in instance.wrong_solutions:
      assert not run_tests(code, instance.tests), (instance.question, code)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_family_has_forks(name):
  for seed in SEEDS:
    instance = REGISTRY[name].instantiate(seed)
    forms = {normalised(code) for code in instance.solutions}
    assert len(forms) == len(instance.solutions) >= 2, instance.solutions


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_locks_signature_comes_from_the_question(name):
  for seed in SEEDS:
    instance = REGISTRY[name].instantiate(seed)
    match = re.search(r"`(\w+)\((\w+)\)`", instance.question)
    assert match, instance.question
    assert match.group(1) == instance.entry_point
    header = f"def {instance.entry_point}({match.group(2)}):"
    for code in instance.solutions + instance.wrong_solutions:
      lines = code.split("\n")
      assert lines[0] == header
      assert all(line.startswith("    ") and (len(line) - len(line.lstrip(" "))) % 4 == 0 for line in lines[1:])
      assert "return" in code


def test_instances_are_deterministic_and_varied():
  for family in REGISTRY.values():
    assert family.instantiate(7) == family.instantiate(7)
    assert len({family.instantiate(seed).question for seed in SEEDS}) > len(SEEDS) // 2


def test_all_difficulties_are_covered():
  assert {f.difficulty for f in REGISTRY.values()} == set(families.DIFFICULTIES)


def test_bad_difficulty_is_rejected():
  with pytest.raises(ValueError, match="difficulty"):
    families.Family("x", "trivial", lambda rng: None)


def test_assert_statements_render_python_literals():
  assert families.assert_statements("f", [((3, "a"), [1, 2])]) == ("assert f(3, 'a') == [1, 2]",)
