"""Benchmark: where the wall-clock of one on-policy self-distillation step goes.

One step = sample G rollouts per prompt with the student -> run them in the sandbox -> build teacher
contexts -> distillation update (teacher forward + student forward/backward + AdamW) -> EMA teacher
update. The first step compiles and is reported apart; each part's figure is its median over the warm steps
after it (--steps - 1 of them, whose rollouts differ). The teacher forward is also timed alone, as a jitted
forward on the same batch. Prints a table of seconds and each part's share of the step (the baseline), with
the shapes and the machine.

  python bench/onpolicy_step.py                                  # tiny random model, built-in task
  python bench/onpolicy_step.py --model_dir=runs/default/models/base --method=sdpo
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
from bench_models import cpu_model
from flax import nnx

from ssd_jax import host_platform
from ssd_jax.config import base_config
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import Sandbox
from ssd_jax.model import hf, presets
from ssd_jax.model.transformer import Transformer
from ssd_jax.onpolicy.rollouts import RolloutSetup, build_step_data, sample_rollouts
from ssd_jax.pipeline.onpolicy_setup import method_spec, templates_from
from ssd_jax.pipeline.training import optimizer_config
from ssd_jax.sampling.batching import prompt_bucket
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.tasks import build_task_tokenizer, builtin_problems
from ssd_jax.train.distill_step import make_behaviour_logprobs, make_distill_step, sequence_hidden
from ssd_jax.train.ema import EmaUpdater, copy_params
from ssd_jax.train.optimizer import make_optimizer
from ssd_jax.train.train_state import init_train_state


def _timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def _model(model_dir: str | None, tokenizer_dir: str):
  if model_dir:
    model, _ = hf.load_hf(model_dir, dtype="float32", param_dtype="float32")
    return nnx.split(model), model_dir
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  return nnx.split(Transformer(cfg, rngs=nnx.Rngs(0))), tokenizer_dir


def main() -> None:
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error on a CPU machine.
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", default="", help="HF model directory (default: tiny random model)")
  parser.add_argument("--method", default="sdpo", choices=("sdsd", "sdpo"))
  parser.add_argument("--prompts", type=int, default=8)
  parser.add_argument("--group_size", type=int, default=4)
  parser.add_argument("--max_new_tokens", type=int, default=64)
  parser.add_argument("--teacher_prompt_width", type=int, default=384)
  parser.add_argument("--steps", type=int, default=4, help="the first compiles; the median of the rest is reported")
  args = parser.parse_args()
  if args.steps < 2:
    raise SystemExit(f"--steps must be >= 2 (the first compiles), got {args.steps}")

  section = base_config().self_distill
  section.rollout.max_new_tokens = args.max_new_tokens
  spec = method_spec(section, args.method)
  scratch = tempfile.mkdtemp(prefix="onpolicy_bench_")
  tokenizer_dir = args.model_dir or str(build_task_tokenizer(os.path.join(scratch, "tokenizer")))
  (graphdef, params), tokenizer_dir = _model(args.model_dir, tokenizer_dir)
  tokenizer = load_tokenizer(tokenizer_dir)
  prompts = PromptSet.build(builtin_problems("synth", args.prompts), tokenizer, system_prompt=None)
  prompt_width = prompts.longest()
  batch_rows = args.prompts * args.group_size
  sampler = Sampler(
    graphdef,
    max_len=prompt_bucket(prompt_width) + args.max_new_tokens,
    batch_size=batch_rows,
    pad_id=tokenizer.pad_id or 0,
  )
  optimizer = make_optimizer(optimizer_config(section))
  step_fn = make_distill_step(graphdef, optimizer, spec.divergence)
  behaviour = None
  if spec.divergence.is_clip is not None:  # As the learner: the importance weights' denominator.
    behaviour = make_behaviour_logprobs(graphdef, spec.divergence, num_micro=optimizer.grad_accum_steps)
  state = init_train_state(params, optimizer)
  # Committed to the device, as the EMA's output is; uncommitted, the second step would compile again.
  teacher = jax.device_put(copy_params(params), jax.devices()[0])
  ema = EmaUpdater(spec.ema_rate)
  teacher_forward = jax.jit(lambda p, b: sequence_hidden(p, graphdef, b, "teacher")[0])

  with Sandbox() as sandbox:
    setup = RolloutSetup(
      tokenizer=tokenizer,
      sampler=sampler,
      sampling=SamplingParams(section.rollout.temperature),
      max_new_tokens=args.max_new_tokens,
      group_size=args.group_size,
      prompt_width=prompt_width,
      teacher_prompt_width=args.teacher_prompt_width,
      sandbox=sandbox,
      templates=templates_from(section),
    )
    rows = []
    for step in range(args.steps):
      generations, sampling = _timed(lambda: sample_rollouts(setup, state.params, prompts.ids, seed=step))
      data = build_step_data(setup, spec.context, prompts, generations, seed=step)
      batch = step_fn.place_batch(data.batch)
      behaviour_seconds = 0.0
      if behaviour is not None:
        batch, behaviour_seconds = _timed(lambda: behaviour(state.params, batch))
      _, forward = _timed(lambda: teacher_forward(teacher, batch))
      (state, _), update = _timed(lambda: step_fn(state, batch, teacher))
      teacher, ema_seconds = _timed(lambda: ema(teacher, state.params))
      rows.append(
        {
          "sampling": sampling,
          "execution": data.seconds["execution"],
          "teacher contexts": data.seconds["contexts"],
          "behaviour log-probs (student fwd)": behaviour_seconds,
          "teacher forward (alone)": forward,
          "update (teacher fwd + student fwd/bwd + AdamW)": update,
          "EMA teacher update": ema_seconds,
        }
      )

  first, warm = rows[0], rows[1:]
  median = {name: statistics.median(row[name] for row in warm) for name in first}
  total = sum(v for k, v in median.items() if k != "teacher forward (alone)")
  cfg = nnx.merge(graphdef, params).cfg
  device = jax.devices()[0]
  print(
    f"method {args.method}: {args.prompts} prompts x G={args.group_size} = {batch_rows} rollouts, "
    f"response <= {args.max_new_tokens} tokens, student prompt width {prompt_width}, teacher prompt width "
    f"{args.teacher_prompt_width}, mean response {data.response_tokens:.1f} tokens"
  )
  print(
    f"model: {cfg.num_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}; "
    f"loss {spec.divergence.kind}/{spec.divergence.form}"
  )
  print(
    f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {device.platform} x{jax.device_count()}, jax {jax.__version__}"
  )
  print(f"context fraction {data.context_fraction:.2f}, reward {data.reward:.2f}")
  print(f"\n{'part':<48}{'first step (s)':>16}{f'median of {len(warm)} (s)':>17}{'share of step':>15}")
  for name in median:
    share = "" if name == "teacher forward (alone)" else f"{100 * median[name] / total:.1f}%"
    print(f"{name:<48}{first[name]:>16.3f}{median[name]:>17.3f}{share:>15}")
  print(
    f"{'step total (sum of the parts)':<48}{sum(v for k, v in first.items() if k != 'teacher forward (alone)'):>16.3f}"
    f"{total:>17.3f}{'100.0%':>15}"
  )


if __name__ == "__main__":
  main()
