"""The `self_distill` stage: on-policy self-distillation (SDSD / OPSD and SDPO) from the base model.

For each method of `self_distill.methods`, starting from the run's base model:

  per step: sample G rollouts per prompt with the current student (same parameters, same mesh)
            -> run them in the sandbox -> build each rollout's teacher context
            -> teacher forward (frozen / EMA parameters, or the live student) and student forward
            -> divergence on the student's response tokens -> one AdamW update -> EMA teacher update
  at step 0 and every `eval_every` steps: pass@k and diversity on held-out problems

Metrics go to `self_distill/<method>/logs/metrics.jsonl` (+ TensorBoard), held-out summaries to
`self_distill/<method>/heldout.jsonl`; checkpoints (student state, and the EMA teacher) to
`self_distill/<method>/checkpoints`, so a killed run resumes at its last checkpoint with the same prompts
and seeds; the final student is written as a Hugging Face directory `models/<method>`, for the `eval` and
`report` stages to evaluate and compare with the base and SSD models (list it in `eval.models`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import Sandbox, SandboxLimits
from ssd_jax.methods import heldout_eval, model_io, problem_source, sampling_setup
from ssd_jax.methods.onpolicy_rollouts import RolloutSetup, TeacherSpec, collect_step_data
from ssd_jax.methods.runtime import Runtime
from ssd_jax.methods.self_distill_config import method_names
from ssd_jax.methods.ssd import Layout, base_model_dir, eval_ks, tokenizer_dir
from ssd_jax.methods.teacher_context import TeacherTemplates
from ssd_jax.train.checkpointing import Checkpointer, restore_or_init
from ssd_jax.train.distill_batch import process_rows
from ssd_jax.train.distill_step import DistillStep
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.ema import EmaUpdater, copy_params
from ssd_jax.train.metrics import MetricsWriter, to_scalars
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import TrainState, abstract_train_state, init_train_state


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """One method's teacher and loss, resolved from its config subsection."""

  name: str
  teacher: str
  ema_rate: float
  context: TeacherSpec
  divergence: DivergenceConfig


def method_spec(section: ml_collections.ConfigDict, name: str) -> MethodSpec:
  """The MethodSpec of `self_distill.<name>`; a zero loss temperature reuses the rollout temperature."""
  m = section[name]
  divergence = DivergenceConfig(
    kind=m.divergence,
    beta=m.beta,
    form=m.form,
    top_k=m.top_k if m.form == "topk" else None,
    temperature=m.loss_temperature or section.rollout.temperature,
    is_clip=m.is_clip or None,
    chunk_size=m.chunk_size,
  )
  return MethodSpec(
    name=name,
    teacher=m.teacher,
    ema_rate=m.ema_rate,
    context=TeacherSpec(context=m.context, use_reference=m.use_reference),
    divergence=divergence,
  )


def templates_from(section: ml_collections.ConfigDict) -> TeacherTemplates:
  return TeacherTemplates(**section.templates.to_dict())


def optimizer_from(section: ml_collections.ConfigDict) -> OptimizerConfig:
  return OptimizerConfig(
    learning_rate=section.learning_rate,
    end_learning_rate=section.end_learning_rate,
    warmup_steps=section.warmup_steps,
    total_steps=section.steps,
    b1=section.b1,
    b2=section.b2,
    weight_decay=section.weight_decay,
    grad_clip_norm=section.grad_clip_norm or None,
    grad_accum_steps=section.grad_accum_steps,
  )


def step_problem_indices(num_problems: int, per_step: int, step: int, seed: int) -> np.ndarray:
  """The distinct problems of `step`: epochs of a seeded permutation, a pure function of the step."""
  if per_step > num_problems:
    raise ValueError(f"self_distill.prompts_per_step = {per_step} exceeds the {num_problems} usable problems")
  epoch, offset = divmod(step, num_problems // per_step)
  order = np.random.default_rng([seed, epoch]).permutation(num_problems)
  return order[offset * per_step : (offset + 1) * per_step]


def _step_seed(seed: int, step: int) -> int:
  return (seed * 1_000_003 + step) % 2**32


@dataclasses.dataclass(frozen=True)
class _Prompts:
  problems: list
  messages: list
  ids: list


def _load_prompts(section, config, tokenizer, max_len: int) -> _Prompts:
  problems = problem_source.load_problems(section, config.seed)
  messages = [problem_source.prompt_messages(p, config.prompting) for p in problems]
  ids = problem_source.encode_prompts(tokenizer, messages)
  keep = [i for i, x in enumerate(ids) if len(x) <= max_len]
  if not keep:
    raise ValueError(f"no prompt of {section.source!r} fits in self_distill.max_prompt_len = {max_len}")
  return _Prompts([problems[i] for i in keep], [messages[i] for i in keep], [ids[i] for i in keep])


def _train_step(
  spec: MethodSpec,
  config,
  setup: RolloutSetup,
  prompts: _Prompts,
  step: int,
  state: TrainState,
  teacher: Any,
  step_fn: DistillStep,
  ema: EmaUpdater | None,
) -> tuple[TrainState, Any, dict]:
  """Rollouts, sandbox, teacher contexts, one update, the EMA update; returns the step's scalars."""
  section = config.self_distill
  chosen = step_problem_indices(len(prompts.problems), section.prompts_per_step, step, config.seed)
  data = collect_step_data(
    setup,
    spec.context,
    state.params,
    [prompts.problems[i] for i in chosen],
    [prompts.messages[i] for i in chosen],
    [prompts.ids[i] for i in chosen],
    seed=_step_seed(config.seed, step),
  )
  begin = time.perf_counter()
  # Every process built the whole batch (same seeds, same verdicts); each places only its rows.
  local = process_rows(data.batch, jax.process_index(), jax.process_count())
  state, metrics = step_fn(state, step_fn.place_batch(local), teacher)
  if ema is not None:
    teacher = ema(teacher, state.params)
  scalars = to_scalars(metrics)  # Waits for the update, so the timing below is the update's.
  scalars.update(
    reward=data.reward,
    context_fraction=data.context_fraction,
    response_tokens=data.response_tokens,
    seconds_update=time.perf_counter() - begin,
    **{f"seconds_{k}": v for k, v in data.seconds.items()},
  )
  return state, teacher, scalars


def _evaluate(
  heldout: heldout_eval.HeldoutSet,
  params: Any,
  setup: RolloutSetup,
  seed: int,
  step: int,
  out: str,
  is_coordinator: bool,
) -> dict[str, float]:
  """Held-out pass@k and diversity of `params`, appended to `heldout.jsonl`; returns them as scalars."""
  summary = heldout_eval.evaluate_params(heldout, params, setup.tokenizer, setup.sandbox, seed=seed)
  if is_coordinator:
    with open(os.path.join(out, "heldout.jsonl"), "a") as f:
      f.write(json.dumps({"step": step, **{k: summary[k] for k in ("pass_at_k", "diversity")}}) + "\n")
  return heldout_eval.summary_scalars(summary)


def train_method(
  spec: MethodSpec,
  config: ml_collections.ConfigDict,
  layout: Layout,
  run: Runtime,
  graphdef: nnx.GraphDef,
  base: Any,
  setup: RolloutSetup,
  prompts: _Prompts,
  heldout: heldout_eval.HeldoutSet | None,
) -> None:
  """Trains one method from the base parameters `base` (left intact) and exports `models/<method>`."""
  section = config.self_distill
  out = os.path.join(layout.workdir, "self_distill", spec.name)
  cfg = model_io.model_config_of(graphdef, base)
  params = copy_params(base)  # The step donates the student's buffers; the base stays for the next method.
  if spec.teacher == "live":
    teacher = None  # The step uses the student's own parameters under stop_gradient.
  else:
    teacher = base if spec.teacher == "frozen" else copy_params(base)  # The EMA update donates its input.
  optimizer = make_optimizer(optimizer_from(section))
  step_fn = DistillStep(graphdef, optimizer, spec.divergence, mesh=run.mesh, rules=run.rules)
  ema = EmaUpdater(spec.ema_rate) if spec.teacher == "ema" else None
  checkpointer = Checkpointer(
    os.path.join(out, "checkpoints"), save_interval_steps=section.checkpoint_every, max_to_keep=2
  )
  teacher_checkpointer = (
    Checkpointer(os.path.join(out, "teacher_checkpoints"), save_interval_steps=section.checkpoint_every, max_to_keep=2)
    if ema
    else None
  )
  try:
    restored = restore_or_init(checkpointer, init_train_state(params, optimizer))
    state, start = restored.state, restored.step
    if ema and start > 0:
      teacher = teacher_checkpointer.restore(
        abstract_train_state(TrainState(state.step, teacher, {})), step=start
      ).state.params
    print(
      f"[self_distill] {spec.name}: teacher={spec.teacher} context={spec.context.context} "
      f"loss={spec.divergence.kind}/{spec.divergence.form}, steps {start}..{section.steps}"
    )
    with MetricsWriter(os.path.join(out, "logs")) as writer:
      if heldout is not None and section.eval_every and start == 0:  # The starting point of the curve.
        writer.write(0, _evaluate(heldout, state.params, setup, config.seed, 0, out, run.is_coordinator))
      for step in range(start, section.steps):
        state, teacher, scalars = _train_step(spec, config, setup, prompts, step, state, teacher, step_fn, ema)
        done = step + 1
        if heldout is not None and section.eval_every and (done % section.eval_every == 0 or done == section.steps):
          scalars.update(_evaluate(heldout, state.params, setup, config.seed, done, out, run.is_coordinator))
        if done % section.log_every == 0 or done == section.steps:
          writer.write(done, scalars)
          print(
            f"[self_distill] {spec.name} step {done}: loss {scalars['loss']:.4f} "
            f"reward {scalars['reward']:.2f} context {scalars['context_fraction']:.2f}"
            + "".join(f" {k} {v:.3f}" for k, v in scalars.items() if k.startswith("eval/"))
          )
        force = done == section.steps
        checkpointer.save(done, state, metadata={"method": spec.name}, force=force)
        if teacher_checkpointer is not None:
          teacher_checkpointer.save(done, TrainState(state.step, teacher, {}), force=force)
  finally:
    checkpointer.close()
    if teacher_checkpointer is not None:
      teacher_checkpointer.close()
  model_io.export_hf(state.params, cfg, layout.model(spec.name), tokenizer_dir(config, layout))


def run_self_distill(config: ml_collections.ConfigDict, workdir: str, run: Runtime) -> None:
  """Trains every method of `self_distill.methods` whose model is not written yet."""
  layout = Layout(workdir)
  section = config.self_distill
  tokenizer = load_tokenizer(tokenizer_dir(config, layout))
  prompts = _load_prompts(section.problems, config, tokenizer, section.max_prompt_len)
  graphdef, base = model_io.load_split(run, base_model_dir(config, layout))
  cfg = model_io.model_config_of(graphdef, base)
  rollout = section.rollout
  sampler = sampling_setup.make_sampler(run, graphdef, cfg, prompts.ids, rollout, tokenizer.pad_id)
  heldout = None
  if section.eval_every:
    problems = problem_source.load_problems(config.eval.problems, config.seed)[: section.eval_problems]
    ids = problem_source.encode_prompts(
      tokenizer, [problem_source.prompt_messages(p, config.prompting) for p in problems]
    )
    heldout = heldout_eval.held_out(
      problems,
      ids,
      sampling_setup.make_sampler(run, graphdef, cfg, ids, config.eval_sampling, tokenizer.pad_id),
      sampling_setup.sampling_params(config.eval_sampling),
      n=section.eval_samples,
      max_new_tokens=config.eval_sampling.max_new_tokens,
      ks=eval_ks(config),
    )
  limits = SandboxLimits(
    timeout_s=config.eval.timeout_s, cpu_time_s=config.eval.timeout_s, memory_mb=config.eval.memory_mb
  )
  with Sandbox(limits, config.eval.workers or None) as sandbox:
    setup = RolloutSetup(
      tokenizer=tokenizer,
      sampler=sampler,
      sampling=sampling_setup.sampling_params(rollout),
      max_new_tokens=rollout.max_new_tokens,
      group_size=section.group_size,
      prompt_width=max(len(ids) for ids in prompts.ids),
      teacher_prompt_width=section.max_teacher_prompt_len,
      sandbox=sandbox,
      templates=templates_from(section),
    )
    for name in method_names(section):
      if os.path.isfile(os.path.join(layout.model(name), "config.json")):
        print(f"[self_distill] {name}: {layout.model(name)} exists, skipping")
        continue
      train_method(method_spec(section, name), config, layout, run, graphdef, base, setup, prompts, heldout)
