"""Models in and out of a run: Hugging Face directories with weights, config and tokenizer files.

Every stage that hands a model on writes a complete Hugging Face directory, so the next stage, the evals
and a user's `transformers.AutoModelForCausalLM.from_pretrained` all load it the same way. A directory is
written under a temporary name and renamed when complete, so a killed export never looks finished.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from ssd_jax import sharding
from ssd_jax.data.tokenizer import generation_config
from ssd_jax.model import ModelConfig, hf
from ssd_jax.train.checkpoint_resume import non_finite_leaves

# Files of a Hugging Face checkpoint that describe its tokenizer and chat template.
TOKENIZER_FILES = (
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "generation_config.json",
  "chat_template.jinja",
  "chat_template.json",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
)


def load_split(
  directory: str, mesh: jax.sharding.Mesh, rules: sharding.LogicalRules, like: ModelConfig
) -> tuple[nnx.GraphDef, Any]:
  """(graphdef, params) of the Hugging Face model in `directory`, each tensor read straight into its shards.

  Args:
    directory: a Hugging Face checkpoint directory.
    mesh, rules: where the parameters go.
    like: the run's model config, whose dtypes, remat, attention, layer scanning and router loss weight the
      loaded model takes (the weight `model.router_aux_loss_coef` sets, else the base checkpoint's).
  """
  if not os.path.isfile(os.path.join(directory, "config.json")):
    raise FileNotFoundError(f"no model in {directory!r} (config.json missing); did the stage that writes it finish?")
  model, _ = hf.load_hf(
    directory,
    mesh=mesh,
    rules=rules,
    dtype=like.dtype,
    param_dtype=like.param_dtype,
    remat=like.remat,
    attention=like.attention,
    scan_layers=like.scan_layers,
    router_aux_loss_coef=like.router_aux_loss_coef,
  )
  graphdef, params = nnx.split(model)
  # Checked here, where a bad tensor has a name: sampling from it failed later with an undrawable token.
  bad = non_finite_leaves(params)
  if bad:
    raise NonFiniteModelError(f"model {directory!r} holds non-finite values in {_listed(bad)}")
  return graphdef, params


class NonFiniteModelError(ValueError):
  """A model to load or export holds a NaN or an infinity."""


def _listed(paths: list[str]) -> str:
  return ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def model_config_of(graphdef: nnx.GraphDef, params: Any) -> ModelConfig:
  """The ModelConfig of a split model."""
  return nnx.merge(graphdef, params).cfg


def _host_value(x: jax.Array) -> np.ndarray:
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def copy_tokenizer_files(source_dir: str, out_dir: str) -> list[str]:
  """Copies the tokenizer files found in `source_dir` to `out_dir`; returns their names."""
  copied = []
  for name in TOKENIZER_FILES:
    path = os.path.join(source_dir, name)
    if os.path.isfile(path):
      shutil.copyfile(path, os.path.join(out_dir, name))
      copied.append(name)
  if not copied:
    raise FileNotFoundError(f"no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...) in {source_dir!r}")
  return copied


def export_hf(state: Any, cfg: ModelConfig, out_dir: str, tokenizer_source: str) -> None:
  """Writes `state` as a Hugging Face directory with the tokenizer files of `tokenizer_source`.

  Every process must call this (the parameters are gathered from all of them); process 0 writes. A model
  with any NaN or infinity is refused: nothing is written.

  Args:
    state: the model's nnx.State (sharded or not).
    cfg: its ModelConfig.
    out_dir: the directory to create; an existing one is replaced.
    tokenizer_source: a directory holding the tokenizer files to copy.
  """
  host_state = jax.tree.map(_host_value, state)
  bad = non_finite_leaves(host_state)
  if bad:
    raise NonFiniteModelError(f"refusing to export {out_dir}: non-finite values in {_listed(bad)}")
  if jax.process_index() == 0:
    partial = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    copy_tokenizer_files(tokenizer_source, partial)
    # Overwrites the copied generation_config.json with one whose EOS ids are the sampler's stop ids.
    hf.save_hf(host_state, cfg, partial, generation=generation_config(tokenizer_source))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"export {out_dir}")
