"""The on-policy learner: the student's own rollouts scored by a privileged teacher, on the shared trainer.

One step: sample G rollouts per prompt with the current student (same parameters, same mesh) -> run them in
the sandbox -> build each rollout's teacher context -> teacher forward (frozen initial or EMA parameters, or
the live student) and student forward -> divergence on the student's response tokens -> one update -> EMA
teacher update. In the shared loop (`train.loop.train_loop`) the rollouts are the batch source
(`rollout_source.RolloutSource`, a pure function of the step: a resumed run draws the same prompts and
seeds) and the divergence is the step's loss (`train.distill_step`); periodic held-out evaluation is a hook.

Usable from Python without the CLI:

  learner = OnPolicyLearner(graphdef, base_params, spec, setup, prompts, config, mesh=mesh)
  params = learner.run()
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from ssd_jax import sharding
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.onpolicy.rollout_source import RolloutSource
from ssd_jax.onpolicy.rollouts import RolloutSetup, TeacherSpec
from ssd_jax.train.distill_step import make_behaviour_logprobs, make_distill_step
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.ema import EmaUpdater, copy_params
from ssd_jax.train.loop import Hook, LoopConfig, train_loop
from ssd_jax.train.metrics import MetricsWriter
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import TrainState, init_train_state

TEACHERS = ("frozen", "ema", "live")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """One method's teacher and loss.

  Attributes:
    name: the method's name ('sdsd', 'sdpo'); names its outputs.
    teacher: 'frozen' (the initial weights), 'ema' (of the student) or 'live' (the student itself).
    ema_rate: student weight per EMA update (teacher 'ema').
    context: what the teacher is shown.
    divergence: the per-token loss.
  """

  name: str
  teacher: str
  ema_rate: float
  context: TeacherSpec
  divergence: DivergenceConfig

  def __post_init__(self):
    if self.teacher not in TEACHERS:
      raise ValueError(f"MethodSpec.teacher must be one of {TEACHERS}, got {self.teacher!r}")


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
  """How long and how the learner trains.

  Attributes:
    steps: optimizer steps.
    prompts_per_step: distinct problems per step.
    seed: picks each step's problems and sampling seed.
    optimizer: AdamW and its schedule.
    out_dir: checkpoints go to `<out_dir>/checkpoints`, metrics to `<out_dir>/logs`; None keeps nothing.
    checkpoint_every: steps between checkpoints.
    max_to_keep: newest checkpoints kept.
    log_every: steps between metric lines.
    updates_per_batch: optimizer steps on each rollout batch (SDPO's code takes several); steps
      u*j .. u*j + u - 1 share the rollouts drawn at step u*j.
    mini_batches: m slices of each rollout batch, P/m prompts' rollouts each, that its updates take in
      turn (update i the slice i mod m; SDPO's code takes one update per mini-batch); m divides P and u.
  """

  steps: int
  prompts_per_step: int
  seed: int
  optimizer: OptimizerConfig
  out_dir: str | None = None
  checkpoint_every: int = 25
  max_to_keep: int = 2
  log_every: int = 1
  updates_per_batch: int = 1
  mini_batches: int = 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LearnerState:
  """What a learner checkpoints: the student's TrainState and, for an EMA teacher, the teacher's parameters."""

  train: TrainState
  teacher: Any

  @property
  def step(self) -> jax.Array:
    return self.train.step

  @staticmethod
  def saved_student_params(saved: Mapping[str, Any]) -> Any:
    """The student's parameters in a checkpointed LearnerState read back without a target (as nested dicts)."""
    return saved["train"]["params"]


class _ProgressLine(Hook):
  """One line per log step: loss, reward, teacher-context share and any held-out scores."""

  def __init__(self, name: str):
    self._name = name

  def on_log(self, step: int, scalars: Mapping[str, float]) -> None:
    evals = "".join(f" {k} {v:.3f}" for k, v in scalars.items() if k.startswith("eval/"))
    print(
      f"[self_distill] {self._name} step {step}: loss {scalars['loss']:.4f} reward {scalars['reward']:.2f} "
      f"context {scalars['context_fraction']:.2f}{evals}"
    )


class OnPolicyLearner:
  """Trains a student from `base` with one method; `run()` returns the trained parameters.

  Args:
    graphdef: the model's graph definition.
    base: the initial parameters (left intact: copied for the student and an EMA teacher).
    spec: the method (teacher, context, divergence).
    setup: the rollout machinery (sampler, sandbox, tokenizer, widths, templates).
    prompts: the problems to train on.
    config: steps, optimizer, checkpoints.
    mesh, rules: where the parameters live; None runs unsharded.
    hooks: extra loop hooks (e.g. `heldout.HeldoutHook`).
  """

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    base: Any,
    spec: MethodSpec,
    setup: RolloutSetup,
    prompts: PromptSet,
    config: LearnerConfig,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding.LogicalRules | None = None,
    hooks: tuple[Hook, ...] = (),
  ):
    self.spec, self.config = spec, config
    self._base = base
    self._optimizer = make_optimizer(config.optimizer)
    self._step = make_distill_step(graphdef, self._optimizer, spec.divergence, mesh=mesh, rules=rules)
    behaviour = None
    if spec.divergence.is_clip is not None:
      behaviour = make_behaviour_logprobs(
        graphdef, spec.divergence, num_micro=self._optimizer.grad_accum_steps, mesh=mesh, rules=rules
      )
    self._ema = EmaUpdater(spec.ema_rate) if spec.teacher == "ema" else None
    self._source = RolloutSource(
      setup,
      spec.context,
      prompts,
      config.prompts_per_step,
      config.seed,
      self._step.place_batch,
      config.updates_per_batch,
      behaviour,
      config.mini_batches,
    )
    self._hooks = hooks

  def initial_state(self) -> LearnerState:
    # The step donates the student's buffers (and the EMA update the teacher's): both start from copies.
    train = init_train_state(copy_params(self._base), self._optimizer)
    return LearnerState(train=train, teacher=copy_params(self._base) if self._ema is not None else None)

  def step(self, state: LearnerState, batch: Any) -> tuple[LearnerState, dict[str, jax.Array]]:
    """One update; the teacher is the frozen base, the live student (None) or the EMA parameters.

    The EMA teacher moves once per rollout batch, after its last update (as SDPO's code does), so it stays
    the same over the `updates_per_batch` updates on one batch.
    """
    teacher = {"frozen": self._base, "live": None, "ema": state.teacher}[self.spec.teacher]
    train, metrics = self._step(state.train, batch, teacher)
    if self._ema is None:
      return LearnerState(train=train, teacher=None), metrics
    updates = self.config.updates_per_batch
    if updates == 1 or int(train.step) % updates == 0:
      return LearnerState(train=train, teacher=self._ema(state.teacher, train.params)), metrics
    return LearnerState(train=train, teacher=state.teacher), metrics

  def run(self, state: LearnerState | None = None) -> Any:
    """Trains to `config.steps` (resuming from the newest checkpoint in `out_dir`); returns the student's params."""
    out = self.config.out_dir
    loop = LoopConfig(
      total_steps=self.config.steps,
      checkpoint_dir=None if out is None else os.path.join(out, "checkpoints"),
      checkpoint_every=self.config.checkpoint_every,
      max_to_keep=self.config.max_to_keep,
      log_every=self.config.log_every,
      progress_bar=False,
    )
    hooks = (*self._hooks, _ProgressLine(self.spec.name))
    writer = None if out is None else MetricsWriter(os.path.join(out, "logs"))
    try:
      final = train_loop(
        self.step,
        self.initial_state() if state is None else state,
        self._source,
        loop,
        hooks=hooks,
        metrics_writer=writer,
        metadata={"method": self.spec.name},
      )
    finally:
      if writer is not None:
        writer.close()
    return final.train.params
