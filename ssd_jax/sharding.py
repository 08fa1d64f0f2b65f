"""Device mesh, logical-axis rules, and helpers that place parameters, activations and batches.

Every parameter carries logical axis names in its `out_sharding` metadata (e.g. ('embed', 'mlp'));
one rules table maps logical names to mesh axes, so the same model code runs on one CPU or a pod.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "expert", "tensor")

LogicalRules = tuple[tuple[str, "str | tuple[str, ...] | None"], ...]

DEFAULT_RULES: LogicalRules = (
  # The expert axis also splits tokens: MoE blocks all-to-all them to their experts' devices.
  ("batch", ("data", "fsdp", "expert")),
  ("length", None),
  ("embed", "fsdp"),
  ("heads", "tensor"),
  ("kv_heads", "tensor"),
  ("head_dim", None),
  ("mlp", "tensor"),
  ("vocab", "tensor"),
  ("layers", None),
  ("expert", "expert"),
)

# How generation holds the weights (`mesh.decode_weights`): 'train' keeps the training layout (FSDP: every
# decode step all-gathers each layer's weights); 'tensor' makes one copy per generation phase sharded over
# 'tensor' only (and 'expert' for MoE experts), replicated over 'data' and 'fsdp', so decode steps gather
# no weights, for the memory of the copy.
DECODE_WEIGHT_LAYOUTS = ("train", "tensor")


def decode_weight_rules(rules: LogicalRules, layout: str) -> LogicalRules:
  """The rules generation places the weights with under `layout` (activations keep `rules`).

  Raises:
    ValueError: an unknown layout.
  """
  if layout not in DECODE_WEIGHT_LAYOUTS:
    raise ValueError(f"decode weight layout must be one of {DECODE_WEIGHT_LAYOUTS}, got {layout!r}")
  if layout == "train":
    return rules
  return tuple((name, None if name == "embed" else axes) for name, axes in rules)


# Model fields whose size must divide evenly over the mesh axes their logical name maps to.
_DIVISIBLE_FIELDS = (
  ("num_heads", "heads"),
  ("num_kv_heads", "kv_heads"),
  ("intermediate_size", "mlp"),
  ("vocab_size", "vocab"),
  ("hidden_size", "embed"),
  ("head_dim", "head_dim"),
  ("num_experts", "expert"),
  ("moe_intermediate_size", "mlp"),
)

_ACTIVE_RULES: contextvars.ContextVar[tuple[Mesh, LogicalRules] | None] = contextvars.ContextVar(
  "ssd_jax_active_rules", default=None
)
_WEIGHT_RULES: contextvars.ContextVar[LogicalRules | None] = contextvars.ContextVar("weight_rules", default=None)


def resolve_mesh_shape(shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """Fills in a mesh shape: missing axes are 1, one -1 entry absorbs the remaining devices.

  Raises:
    ValueError: unknown axis names, more than one -1, or sizes that do not multiply to num_devices.
  """
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"Unknown mesh axes {sorted(unknown)}; mesh axes are {MESH_AXES}")
  sizes = {axis: int(shape.get(axis, 1)) for axis in MESH_AXES}
  free = [axis for axis, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise ValueError(f"only one of mesh.{', mesh.'.join(free)} may be -1")
  bad = [axis for axis, size in sizes.items() if size == 0 or size < -1]
  if bad:
    raise ValueError(f"mesh axis sizes must be positive or -1, got {sizes}")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(f"mesh.{free[0]}=-1 cannot absorb {num_devices} devices: the other axes multiply to {fixed}")
    sizes[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    shape_text = ", ".join(f"{axis}={size}" for axis, size in sizes.items())
    raise ValueError(f"mesh ({shape_text}) multiplies to {fixed}, but there are {num_devices} devices")
  return sizes


def make_mesh(shape: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
  """Builds a Mesh over MESH_AXES ('data', 'fsdp', 'expert', 'tensor') from e.g. {'fsdp': -1, 'tensor': 4}."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = resolve_mesh_shape(shape, len(devices))
  dims = tuple(sizes[axis] for axis in MESH_AXES)
  try:  # Topology-aware layout on TPU; plain order where the device kind has no topology.
    grid = mesh_utils.create_device_mesh(dims, devices=devices, allow_split_physical_axes=True)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices, dtype=object).reshape(dims)
  return Mesh(grid, MESH_AXES)


def as_axes(axes: str | Sequence[str] | None) -> tuple[str, ...]:
  """A rule's or PartitionSpec entry's mesh axes as a tuple: None -> (), 'data' -> ('data',)."""
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def _rule_lookup(rules: LogicalRules) -> dict[str, Any]:
  table: dict[str, Any] = {}
  for name, axes in rules:
    table.setdefault(name, axes)  # First rule for a name wins.
  return table


def logical_to_spec(names: Sequence[str | None], rules: LogicalRules = DEFAULT_RULES) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec.

  A mesh axis is used at most once per spec: a later dimension drops axes an earlier one took
  (e.g. ('batch', 'length', 'embed') with batch->('data','fsdp') leaves embed replicated).

  Raises:
    ValueError: a name that has no rule.
  """
  table = _rule_lookup(rules)
  used: set[str] = set()
  spec = []
  for name in names:
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise ValueError(f"Logical axis {name!r} has no sharding rule; rules cover {sorted(table)}")
    axes = table[name]
    axes = tuple(a for a in as_axes(axes) if a not in used)
    used.update(axes)
    spec.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
  return PartitionSpec(*spec)


def axes_size(mesh: Mesh | None, axes: str | Sequence[str] | None) -> int:
  """How many pieces `axes` of `mesh` (a PartitionSpec entry) split a dimension into; 1 without a mesh."""
  return 1 if mesh is None else math.prod(mesh.shape[a] for a in as_axes(axes))


def dividing_axes(axes: str | Sequence[str] | None, size: int, mesh: Mesh) -> tuple[str, ...] | None:
  """`axes` (a PartitionSpec entry) when their mesh size divides `size`; None (replicate) otherwise."""
  if axes is None:
    return None
  return as_axes(axes) if size % axes_size(mesh, axes) == 0 else None


def validate_mesh_for_model(
  mesh_shape: Mapping[str, int] | Mesh, cfg: Any, rules: LogicalRules = DEFAULT_RULES
) -> None:
  """Checks that every sharded model dimension divides over its mesh axes.

  Args:
    mesh_shape: a Mesh or a resolved axis-size mapping (a -1 entry is treated as unknown and skipped).
    cfg: a ModelConfig.
    rules: logical-axis rules.

  Raises:
    ValueError: naming the config field and the mesh axes it does not divide over.
  """
  if isinstance(mesh_shape, Mesh):
    mesh_shape = dict(mesh_shape.shape)
  table = _rule_lookup(rules)
  for field, logical in _DIVISIBLE_FIELDS:
    axes = as_axes(table.get(logical))
    if any(int(mesh_shape.get(a, 1)) == -1 for a in axes):
      continue
    shards = math.prod(int(mesh_shape.get(a, 1)) for a in axes)
    size = getattr(cfg, field)
    if size % shards:
      raise ValueError(
        f"ModelConfig.{field}={size} is not divisible by the mesh axes {axes} of size {shards} "
        f"(logical axis {logical!r}); change the mesh shape or the sharding rules"
      )


def _is_variable(x: Any) -> bool:
  return isinstance(x, nnx.Variable)


def _variable_names(var: nnx.Variable) -> tuple[str | None, ...]:
  names = var.get_metadata("out_sharding", None)
  if names is None:
    return (None,) * np.ndim(var.get_value())
  return tuple(names)


def state_shardings(state: Any, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> Any:
  """Same tree as `state` (an nnx.State, concrete or abstract) with a NamedSharding per variable."""
  return jax.tree.map(
    lambda v: v.replace(NamedSharding(mesh, logical_to_spec(_variable_names(v), rules))), state, is_leaf=_is_variable
  )


def shard_state(state: Any, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> Any:
  """Places every variable of an nnx.State on `mesh` according to its logical names."""
  return jax.device_put(state, state_shardings(state, mesh, rules))


@contextlib.contextmanager
def use_rules(
  mesh: Mesh, rules: LogicalRules = DEFAULT_RULES, weight_rules: LogicalRules | None = None
) -> Iterator[None]:
  """Activates (mesh, rules) for `constrain` inside model code traced in this context.

  Args:
    mesh, rules: the mesh, and the rules activations are placed by.
    weight_rules: the rules the weights were placed by, where not `rules` (a decode layout, see
      `decode_weight_rules`); code that maps over weights shard by shard reads them (`active_weight_rules`).
  """
  token = _ACTIVE_RULES.set((mesh, rules))
  weights = _WEIGHT_RULES.set(weight_rules)
  try:
    yield
  finally:
    _WEIGHT_RULES.reset(weights)
    _ACTIVE_RULES.reset(token)


def active_rules() -> tuple[Mesh, LogicalRules] | None:
  """The (mesh, rules) activated by the innermost `use_rules`, or None outside it."""
  return _ACTIVE_RULES.get()


def active_weight_rules() -> LogicalRules | None:
  """The rules the weights are placed by under the innermost `use_rules` (its `rules` unless given apart)."""
  active = _ACTIVE_RULES.get()
  return None if active is None else (_WEIGHT_RULES.get() or active[1])


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """with_sharding_constraint by logical names under `use_rules`; identity outside it."""
  active = _ACTIVE_RULES.get()
  if active is None:
    return x
  mesh, rules = active
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, rules)))


def shard_batch(
  host_local_tree: Any, mesh: Mesh, names: Sequence[str | None] = ("batch",), rules: LogicalRules = DEFAULT_RULES
) -> Any:
  """Assembles global arrays from each process's local rows.

  Args:
    host_local_tree: pytree of numpy arrays, this process's slice along the leading (batch) axis.
    mesh: the mesh.
    names: logical names of each leaf's leading dimensions (trailing ones are replicated).
    rules: logical-axis rules.

  Returns:
    The same tree of global jax.Arrays, batch dimension = sum over processes.
  """

  def put(x):
    x = np.asarray(x)
    spec = logical_to_spec(tuple(names[: x.ndim]), rules)
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x)

  return jax.tree.map(put, host_local_tree)
