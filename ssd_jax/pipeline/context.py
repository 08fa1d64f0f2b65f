"""RunContext: what every stage of a run shares, built once per run.

It resolves the model shape and the mesh before any expensive work (a mesh that does not fit the model fails
naming the field, not deep inside a compile), and gives every stage the same way to reach the run's
artifacts and set-up: paths (`layout`), the tokenizer, models in and out (Hugging Face directories), the
problems and their prompts, samplers, and the sandbox limits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import ml_collections
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from ssd_jax import config as config_lib
from ssd_jax import process_group, sharding
from ssd_jax.data.chat import problem_to_messages
from ssd_jax.data.problems import Problem
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import SandboxLimits
from ssd_jax.evals.splits import Split, split_problems
from ssd_jax.model import ModelConfig, hf_config, presets, sharded_init
from ssd_jax.pipeline import model_io, problems, sampling_setup
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.process_group import ProcessGroup
from ssd_jax.sampling.generate import Sampler


def model_config_from(config: ml_collections.ConfigDict) -> ModelConfig:
  """The ModelConfig named by `config.model`: a HF directory's config.json, else the preset with `model.overrides`."""
  overrides = dict(
    dtype=config.model.dtype,
    param_dtype=config.model.param_dtype,
    remat=config.model.remat,
    attention=config.model.attention,
    scan_layers=config.model.scan_layers,
  )
  if config.model.router_aux_loss_coef != -1:
    overrides["router_aux_loss_coef"] = float(config.model.router_aux_loss_coef)
  try:
    if config.model.hf_dir:
      path = os.path.join(config.model.hf_dir, "config.json")
      if not os.path.exists(path):
        raise config_lib.ConfigError(f"field 'model.hf_dir': no config.json in {config.model.hf_dir!r}")
      with open(path) as f:
        return hf_config.config_from_hf(json.load(f), **overrides)
    if config.model.preset not in presets.names():
      raise config_lib.ConfigError(
        f"field 'model.preset' = {config.model.preset!r} is unknown; choose from {presets.names()}"
      )
    shape = {name: int(value) for name, value in config.model.overrides.items() if value}
    return presets.get(config.model.preset, **overrides, **shape)
  except ValueError as e:
    if isinstance(e, config_lib.ConfigError):
      raise
    raise config_lib.ConfigError(f"field 'model': {e}") from e


@dataclasses.dataclass(frozen=True)
class RunContext:
  """The run's config, model shape, mesh and artifact paths.

  Attributes:
    config: the validated config.
    layout: where the run's artifacts live.
    model_cfg: the resolved ModelConfig (preset with `model.overrides`, or the HF directory's).
    mesh_shape: axis name -> size, multiplying to the device count.
    rules: logical axis -> mesh axes.
  """

  config: ml_collections.ConfigDict
  layout: RunLayout
  model_cfg: ModelConfig
  mesh_shape: dict[str, int]
  rules: sharding.LogicalRules

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, workdir: str) -> RunContext:
    """Resolves the model and mesh; raises ConfigError naming the field on any mismatch."""
    model_cfg = model_config_from(config)
    # A plan-only run sizes its mesh for the topology it compiles for, not for this machine.
    mesh_shape = config_lib.mesh_shape(config, config_lib.planning_device_count(config) or jax.device_count())
    try:
      sharding.validate_mesh_for_model(mesh_shape, model_cfg, sharding.DEFAULT_RULES)
    except ValueError as e:
      raise config_lib.ConfigError(
        f"field 'mesh' = {mesh_shape} does not fit model {config.model.preset or config.model.hf_dir}: {e}"
      ) from e
    return cls(config, RunLayout(workdir), model_cfg, mesh_shape, sharding.DEFAULT_RULES)

  @property
  def seed(self) -> int:
    return int(self.config.seed)

  @functools.cached_property
  def mesh(self) -> Mesh:
    return sharding.make_mesh(self.mesh_shape)

  @property
  def is_coordinator(self) -> bool:
    return jax.process_index() == 0

  @functools.cached_property
  def process_group(self) -> ProcessGroup:
    """The run's processes, for host work they share (grading)."""
    return process_group.current()

  def sync(self, name: str) -> None:
    """A barrier across processes (nothing on one process)."""
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(name)

  # Models.

  @property
  def base_model_dir(self) -> str:
    """`model.hf_dir`, or the base model the pretrain stage writes."""
    return self.config.model.hf_dir or self.layout.model("base")

  @property
  def tokenizer_dir(self) -> str:
    """`tokenizer.path`, else the base model's directory (which holds its tokenizer files)."""
    return self.config.tokenizer.path or self.base_model_dir

  def model_dir(self, name: str) -> str:
    """The directory of model `name`: the base model, or one a training stage wrote."""
    return self.base_model_dir if name == "base" else self.layout.model(name)

  @functools.cached_property
  def tokenizer(self):
    """The run's tokenizer; its ids must fit the model's vocabulary."""
    tokenizer = load_tokenizer(self.tokenizer_dir)
    if tokenizer.vocab_size > self.model_cfg.vocab_size:
      raise config_lib.ConfigError(
        f"the tokenizer in {self.tokenizer_dir!r} has {tokenizer.vocab_size} tokens but the model's vocabulary "
        f"is {self.model_cfg.vocab_size}: field 'tokenizer.path' or 'model' is wrong"
      )
    return tokenizer

  def init_model(self) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, params) of a randomly initialised `model_cfg`, created directly in its shards."""
    return nnx.split(sharded_init.create_sharded_model(self.model_cfg, self.mesh, self.rules, seed=self.seed))

  def load_model(self, directory: str) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, params) of the Hugging Face model in `directory`, each tensor read into its shards."""
    return model_io.load_split(directory, self.mesh, self.rules, self.model_cfg)

  def export_model(self, params: Any, cfg: ModelConfig, name: str, tokenizer_source: str | None = None) -> str:
    """Writes `params` as the Hugging Face directory of model `name` with the run's (or given) tokenizer files."""
    out = self.layout.model(name)
    model_io.export_hf(params, cfg, out, tokenizer_source or self.tokenizer_dir)
    return out

  # Problems, sampling, grading.

  def prompts(self, section: ml_collections.ConfigDict) -> PromptSet:
    """The problems of a `problems` config section with their prompts, rendered by the run's tokenizer."""
    prompting = self.config.prompting
    return PromptSet.build(
      problems.load_problems(section, self.seed),
      self.tokenizer,
      system_prompt=prompting.system_prompt,
      include_public_tests=prompting.include_public_tests,
      style=prompting.style,
    )

  def eval_split(self, prompts: PromptSet) -> Split:
    """The dev/test split of `eval.problems` (`prompts`) by `eval.split`; the eval stage records it."""
    return split_problems(
      prompts.task_ids,
      self.config.eval.split.dev_fraction,
      int(self.config.eval.split.seed),
      strata={p.task_id: p.difficulty for p in prompts.problems},
    )

  def messages(self, problem: Problem) -> list[dict[str, str]]:
    """The chat messages asking for `problem`, as `prompts` renders them."""
    prompting = self.config.prompting
    return problem_to_messages(
      problem, prompting.system_prompt or None, prompting.include_public_tests, prompting.style
    )

  def sampler(
    self, graphdef: nnx.GraphDef, cfg: ModelConfig, prompt_ids, section: ml_collections.ConfigDict
  ) -> Sampler:
    """A sampler on the run's mesh sized for the longest prompt plus `section.max_new_tokens`."""
    return sampling_setup.make_sampler(
      self.mesh,
      self.rules,
      graphdef,
      cfg,
      prompt_ids,
      section,
      self.tokenizer.pad_id,
      decode_weights=self.config.mesh.decode_weights,
    )

  @property
  def sandbox_limits(self) -> SandboxLimits:
    section = self.config.eval
    return SandboxLimits(timeout_s=section.timeout_s, cpu_time_s=section.timeout_s, memory_mb=section.memory_mb)

  @property
  def sandbox_workers(self) -> int | None:
    return self.config.eval.workers or None

  @property
  def sandbox_allow_weak(self) -> bool:
    """Grade even if an isolation layer is missing (results and reports then say so)."""
    return bool(self.config.eval.allow_weak_sandbox)
