"""Hugging Face checkpoint import/export for Qwen3ForCausalLM, Qwen3MoeForCausalLM and LlamaForCausalLM.

Import reads config.json and safetensors (one file or an index of shards) and builds each parameter
directly in its target sharding: every device shard is read as a slice of the file, so no full host
copy of a large tensor is made. Export writes model.safetensors in torch layout beside config.json (and
generation_config.json when given one; `hf_config`). One parameter of ours may hold several file tensors
along leading axes: the layers of a scanned stack, and the experts of an MoE block (the files keep one
tensor per expert, as the Hub does).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors import safe_open
from safetensors.numpy import save_file

from ssd_jax.model.config import ModelConfig
from ssd_jax.model.hf_config import config_from_hf, config_to_hf, write_configs
from ssd_jax.model.transformer import Transformer
from ssd_jax.sharding import DEFAULT_RULES, LogicalRules, state_shardings

SAFETENSORS_INDEX = "model.safetensors.index.json"


# Layouts: how a parameter of ours relates to the torch tensor. `read(get, index, shape)` returns our
# block `index` (a tuple of slices into our `shape`) from `get(hf_index)`, which slices the file tensor.
def _norm(index, shape):
  return tuple(slice(*s.indices(n)) for s, n in zip(index, shape))


def _read_same(get, index, shape):
  return get(_norm(index, shape))


def _read_transposed(get, index, shape):  # ours [in, out] <- torch Linear [out, in]
  rows, cols = _norm(index, shape)
  return get((cols, rows)).T


def _read_split_out(get, index, shape):  # ours [in, heads, head_dim] <- torch [heads*head_dim, in]
  d, h, k = _norm(index, shape)
  dh = shape[2]
  block = get((slice(h.start * dh, h.stop * dh), d))
  return block.reshape(h.stop - h.start, dh, -1).transpose(2, 0, 1)[:, :, k]


def _read_split_in(get, index, shape):  # ours [heads, head_dim, out] <- torch [out, heads*head_dim]
  h, k, d = _norm(index, shape)
  dh = shape[1]
  block = get((d, slice(h.start * dh, h.stop * dh)))
  return block.reshape(d.stop - d.start, h.stop - h.start, dh).transpose(1, 2, 0)[:, k, :]


def _to_hf(layout: str, x: np.ndarray) -> np.ndarray:
  if layout == "same":
    return x
  if layout == "transposed":
    return x.T
  if layout == "split_out":
    return x.reshape(x.shape[0], -1).T
  return x.reshape(-1, x.shape[-1]).T  # split_in


def _hf_shape(layout: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  if layout == "same":
    return shape
  if layout == "transposed":
    return shape[::-1]
  if layout == "split_out":
    return (shape[1] * shape[2], shape[0])
  return (shape[2], shape[0] * shape[1])  # split_in


_READERS: dict[str, Callable] = {
  "same": _read_same,
  "transposed": _read_transposed,
  "split_out": _read_split_out,
  "split_in": _read_split_in,
}

_LAYER_NAMES = {
  ("attn", "q_proj"): ("self_attn.q_proj.weight", "split_out"),
  ("attn", "k_proj"): ("self_attn.k_proj.weight", "split_out"),
  ("attn", "v_proj"): ("self_attn.v_proj.weight", "split_out"),
  ("attn", "o_proj"): ("self_attn.o_proj.weight", "split_in"),
  ("attn", "q_norm", "scale"): ("self_attn.q_norm.weight", "same"),
  ("attn", "k_norm", "scale"): ("self_attn.k_norm.weight", "same"),
  ("mlp", "gate_proj"): ("mlp.gate_proj.weight", "transposed"),
  ("mlp", "up_proj"): ("mlp.up_proj.weight", "transposed"),
  ("mlp", "down_proj"): ("mlp.down_proj.weight", "transposed"),
  ("mlp", "router"): ("mlp.gate.weight", "transposed"),
  ("input_norm", "scale"): ("input_layernorm.weight", "same"),
  ("post_attention_norm", "scale"): ("post_attention_layernorm.weight", "same"),
}
_TOP_NAMES = {
  ("embed",): ("model.embed_tokens.weight", "same"),
  ("final_norm", "scale"): ("model.norm.weight", "same"),
  ("lm_head",): ("lm_head.weight", "transposed"),
}


# MoE expert weights [experts, in, out]: one torch Linear [out, in] per expert.
_EXPERT_NAMES = {
  ("mlp", "gate_proj"): "mlp.experts.{}.gate_proj.weight",
  ("mlp", "up_proj"): "mlp.experts.{}.up_proj.weight",
  ("mlp", "down_proj"): "mlp.experts.{}.down_proj.weight",
}


def is_stacked(path: tuple[Any, ...]) -> bool:
  """Whether the parameter at `path` holds all layers along a leading axis (ModelConfig.scan_layers)."""
  return path[0] == "layers" and not isinstance(path[1], int)


def hf_name(path: tuple[Any, ...], layer: int | None = None, expert: int | None = None) -> tuple[str, str]:
  """(torch tensor name, layout) of the parameter at state path `path` (of `layer`, when stacked; of
  `expert` for an expert weight, whose leading axis is the expert)."""
  if path[0] == "layers":
    index, rest = (layer, tuple(path[1:])) if is_stacked(path) else (path[1], tuple(path[2:]))
    if expert is not None:
      return f"model.layers.{index}.{_EXPERT_NAMES[rest].format(expert)}", "transposed"
    name, layout = _LAYER_NAMES[rest]
    return f"model.layers.{index}.{name}", layout
  return _TOP_NAMES[tuple(path)]


def _file_axes(path: tuple[Any, ...], var: nnx.Variable) -> tuple[bool, bool]:
  """(layers axis, experts axis): which leading axes of the parameter index separate file tensors."""
  names = tuple(var.get_metadata("out_sharding", None) or ())
  return is_stacked(path), "expert" in names


def _tensor_name(path, stacked: bool, expert: bool, lead: tuple[int, ...]) -> tuple[str, str]:
  layer = lead[0] if stacked else None
  return hf_name(path, layer, lead[-1] if expert else None)


def _path_keys(path) -> tuple[Any, ...]:
  return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


class _SafetensorsReader:
  """Opens the safetensors files of a checkpoint directory and slices tensors by name."""

  def __init__(self, directory: str):
    index_path = os.path.join(directory, SAFETENSORS_INDEX)
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    else:
      single = os.path.join(directory, "model.safetensors")
      if not os.path.exists(single):
        raise FileNotFoundError(f"No model.safetensors or {SAFETENSORS_INDEX} in {directory}")
      with safe_open(single, framework="numpy") as f:
        weight_map = {name: "model.safetensors" for name in f.keys()}
    self._files = {name: os.path.join(directory, file) for name, file in weight_map.items()}
    self._handles: dict[str, Any] = {}

  def __contains__(self, name: str) -> bool:
    return name in self._files

  def slice(self, name: str):
    path = self._files[name]
    if path not in self._handles:
      self._handles[path] = safe_open(path, framework="numpy")
    return self._handles[path].get_slice(name)


def load_hf(
  directory: str,
  mesh: Mesh | None = None,
  rules: LogicalRules = DEFAULT_RULES,
  dtype: str | None = None,
  param_dtype: str | None = None,
  **config_overrides,
) -> tuple[Transformer, ModelConfig]:
  """Loads a Hugging Face checkpoint into a Transformer.

  Args:
    directory: holds config.json and model.safetensors (or a sharded index).
    mesh: place parameters on this mesh per `rules`; None puts them on the first device.
    rules: logical-axis rules.
    dtype, param_dtype: activation / parameter dtypes (default: the config's bfloat16).
    **config_overrides: other ModelConfig fields (e.g. remat).

  Returns:
    (model, cfg).

  Raises:
    ValueError: missing tensors or shape mismatches, naming the tensor.
  """
  with open(os.path.join(directory, "config.json")) as f:
    overrides = dict(config_overrides)
    if dtype is not None:
      overrides["dtype"] = dtype
    if param_dtype is not None:
      overrides["param_dtype"] = param_dtype
    cfg = config_from_hf(json.load(f), **overrides)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  if mesh is None:
    single = SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda v: v.replace(single), abstract, is_leaf=_is_variable)
  else:
    shardings = state_shardings(abstract, mesh, rules)
  reader = _SafetensorsReader(directory)

  def open_tensor(name, layout, shape):
    if name not in reader:
      raise ValueError(f"Checkpoint {directory} is missing tensor {name!r}")
    tensor = reader.slice(name)
    expected = _hf_shape(layout, shape)
    if tuple(tensor.get_shape()) != expected:
      raise ValueError(
        f"Tensor {name!r} has shape {tuple(tensor.get_shape())}, expected {expected} from its config.json"
      )
    return tensor

  def load_one(path, var, sharding):
    path = _path_keys(path)
    shape, dt = tuple(var.shape), var.dtype
    stacked, expert = _file_axes(path, var)
    lead = int(stacked) + int(expert)  # Leading axes that index separate file tensors.
    inner = shape[lead:]
    layout = _tensor_name(path, stacked, expert, (0,) * lead)[1]
    tensors = {
      key: open_tensor(_tensor_name(path, stacked, expert, key)[0], layout, inner)
      for key in itertools.product(*(range(n) for n in shape[:lead]))
    }

    def read(index):
      ranges = [range(*s.indices(n)) for s, n in zip(index[:lead], shape[:lead])]
      blocks = [
        _READERS[layout](lambda i, t=tensors[key]: t[i], index[lead:], inner) for key in itertools.product(*ranges)
      ]
      first = blocks[0]
      return np.stack(blocks).reshape(*(len(r) for r in ranges), *first.shape) if lead else first

    value = jax.make_array_from_callback(shape, sharding.get_value(), lambda index: np.asarray(read(index)).astype(dt))
    return var.replace(value)

  state = jax.tree_util.tree_map_with_path(load_one, abstract, shardings, is_leaf=_is_variable)
  return nnx.merge(graphdef, state), cfg


def save_hf(
  model_or_state: Transformer | Any,
  cfg: ModelConfig,
  directory: str,
  generation: Mapping[str, Any] | None = None,
) -> None:
  """Writes config.json and model.safetensors that transformers' from_pretrained loads.

  Args:
    model_or_state: a Transformer or its nnx.State (parameters gathered to this host).
    cfg: its config.
    directory: created if missing.
    generation: the generation_config.json to write (e.g. `ssd_jax.data.tokenizer.generation_config`);
      its bos/eos/pad ids also go into config.json. None writes neither.
  """
  state = nnx.state(model_or_state) if isinstance(model_or_state, nnx.Module) else model_or_state
  tensors = {}
  for path, var in jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_variable)[0]:
    path, value = _path_keys(path), np.asarray(jax.device_get(var.get_value()))
    stacked, expert = _file_axes(path, var)
    lead = int(stacked) + int(expert)
    for key in itertools.product(*(range(n) for n in value.shape[:lead])):
      name, layout = _tensor_name(path, stacked, expert, key)
      tensors[name] = np.ascontiguousarray(_to_hf(layout, value[key]))
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  write_configs(directory, config_to_hf(cfg), generation)
