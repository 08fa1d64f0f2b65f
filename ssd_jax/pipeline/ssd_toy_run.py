"""The SSD toy through the real pipeline: pre-train, sample at T_train, SFT on the samples, score exactly.

A tiny transformer learns the toy's distributions from a corpus with the project's trainer; the project's
sampler draws one sample per prompt from it at T_train with truncation; SFT on those samples gives the SSD
model. Both are scored by their exact success probability (pass@k from the next-token distributions along each
problem's right sequence, with T_eval and the evaluation truncation applied), over a T_eval grid, beside the
same computation on the tabular distributions (the corpus's and its truncated, tempered version).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ssd_jax.model.config import ModelConfig
from ssd_jax.model.transformer import Transformer
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.sampling.sequence_probability import sequence_probabilities, truncated_distributions
from ssd_jax.tasks import ssd_toy
from ssd_jax.train.loop import IteratorSource, LoopConfig, train_loop
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import init_train_state


@dataclasses.dataclass(frozen=True)
class ToyRunConfig:
  """Sizes and settings of one toy run (see `configs/ssd_toy.py`)."""

  spec: ssd_toy.ToySpec
  train_decoding: SamplingParams
  eval_top_k: int
  eval_top_p: float
  eval_temperatures: tuple[float, ...]
  ks: tuple[int, ...]
  corpus_size: int
  pretrain_steps: int
  pretrain_learning_rate: float
  num_samples: int
  sft_steps: int
  sft_learning_rate: float
  batch_size: int
  seed: int

  @classmethod
  def from_section(cls, toy: ml_collections.ConfigDict, seed: int) -> ToyRunConfig:
    """From the config's `toy` section (comma-separated lists as text)."""

    def floats(text: str) -> tuple[float, ...]:
      return tuple(float(x) for x in text.split(",") if x.strip())

    return cls(
      spec=ssd_toy.ToySpec(
        pattern=toy.pattern,
        lock_right=toy.lock_right,
        fork_branches=floats(toy.fork_branches),
        num_distractors=toy.num_distractors,
      ),
      train_decoding=SamplingParams(temperature=toy.train_temperature, top_k=toy.top_k, top_p=toy.top_p),
      eval_top_k=toy.eval_top_k,
      eval_top_p=toy.eval_top_p,
      eval_temperatures=floats(toy.eval_temperatures),
      ks=tuple(int(k) for k in floats(toy.ks)),
      corpus_size=toy.corpus_size,
      pretrain_steps=toy.pretrain_steps,
      pretrain_learning_rate=toy.pretrain_learning_rate,
      num_samples=toy.num_samples,
      sft_steps=toy.sft_steps,
      sft_learning_rate=toy.sft_learning_rate,
      batch_size=toy.batch_size,
      seed=seed,
    )


def _rows(sequences: np.ndarray) -> dict[str, np.ndarray]:
  """SFT arrays for [start, sequence] rows: every sequence token is a target. int32 [n, length + 1] each."""
  n, length = sequences.shape
  tokens = np.concatenate([np.full((n, 1), ssd_toy.START_ID, np.int32), sequences], axis=1)
  targets = np.concatenate([sequences, np.zeros((n, 1), np.int32)], axis=1)
  loss_mask = np.concatenate([np.ones((n, length), np.int32), np.zeros((n, 1), np.int32)], axis=1)
  return dict(
    tokens=tokens,
    targets=targets,
    loss_mask=loss_mask,
    segment_ids=np.ones_like(tokens),
    positions=np.broadcast_to(np.arange(length + 1, dtype=np.int32), tokens.shape).copy(),
  )


def _batches(rows: dict[str, np.ndarray], batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled epochs of `batch_size` rows."""
  rng = np.random.default_rng(seed)
  n = len(rows["tokens"])
  while True:
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
      index = order[start : start + batch_size]
      yield {key: value[index] for key, value in rows.items()}


def fit(graphdef, params, sequences: np.ndarray, *, steps: int, learning_rate: float, batch_size: int, seed: int):
  """Cross-entropy training of `params` on `sequences` (int32 [n, length]) with the project's step and loop."""
  optimizer = make_optimizer(
    OptimizerConfig(
      learning_rate=learning_rate,
      end_learning_rate=learning_rate / 10,
      warmup_steps=max(steps // 10, 1),
      total_steps=steps,
      weight_decay=0.0,
    )
  )
  step = make_sft_step(graphdef, optimizer, chunk_size=sequences.shape[1] + 1)
  rows = _rows(sequences)
  state = train_loop(
    step,
    init_train_state(params, optimizer),
    IteratorSource(lambda: _batches(rows, batch_size, seed), step.place_batch),
    LoopConfig(total_steps=steps, progress_bar=False, log_every=steps),
  )
  return state.params


def right_sequence_logits(graphdef, params, spec: ssd_toy.ToySpec) -> np.ndarray:
  """float32 [problems, length, vocab]: the model's next-token logits along each problem's right sequence."""
  rows = _rows(ssd_toy.right_sequences(spec))
  model = nnx.merge(graphdef, params)
  hidden, _ = model.hidden(jnp.asarray(rows["tokens"]), jnp.asarray(rows["positions"]))
  return np.asarray(jax.device_get(model.unembed(hidden)))[:, :-1]


def success_curve(logits: np.ndarray, config: ToyRunConfig) -> dict[str, list[float]]:
  """Exact pass@k at each T_eval of the grid: {'pass@k': [value per temperature]}."""
  sequences = ssd_toy.right_sequences(config.spec)
  curve: dict[str, list[float]] = {f"pass@{k}": [] for k in config.ks}
  for temperature in config.eval_temperatures:
    params = SamplingParams(temperature=temperature, top_k=config.eval_top_k, top_p=config.eval_top_p)
    passed = ssd_toy.pass_at_k(sequence_probabilities(logits, sequences, params), config.ks)
    for k in config.ks:
      curve[f"pass@{k}"].append(float(passed[k]))
  return curve


def tabular_logits(config: ToyRunConfig) -> dict[str, np.ndarray]:
  """Per-problem logits of the ideal base (the corpus's distributions) and ideal SSD (them at T_train, truncated)."""
  spec = config.spec
  base = np.log(np.maximum(ssd_toy.target_distributions(spec), 1e-30))
  ssd = np.log(np.maximum(truncated_distributions(base, config.train_decoding), 1e-30))
  problems = len(ssd_toy.right_sequences(spec))
  return {
    name: np.broadcast_to(x, (problems, *x.shape)).astype(np.float32) for name, x in (("base", base), ("ssd", ssd))
  }


def synthesize(graphdef, params, config: ToyRunConfig) -> tuple[np.ndarray, int]:
  """One sample per prompt at T_train from the project's sampler: (int32 [num_samples, length], number cut short)."""
  length = config.spec.length
  sampler = Sampler(graphdef, max_len=length + 2, batch_size=config.batch_size, bucket_multiple=8)
  generations = sampler.generate(
    params,
    [[ssd_toy.START_ID]] * config.num_samples,
    config.train_decoding,
    max_new_tokens=length,
    seed=config.seed,
    progress=False,
  )
  complete = [g.token_ids for g in generations if len(g.token_ids) == length]
  return np.stack(complete).astype(np.int32), config.num_samples - len(complete)


def run_toy(model_cfg: ModelConfig, config: ToyRunConfig) -> dict:
  """Pre-train, synthesize, SFT and score; returns the curves and each model's best T_eval per metric."""
  spec = config.spec
  cfg = model_cfg.replace(vocab_size=spec.vocab_size)
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(config.seed)))
  corpus = ssd_toy.sample_corpus(spec, config.corpus_size, config.seed)
  train = dict(batch_size=config.batch_size, seed=config.seed)
  base = fit(
    graphdef, params, corpus, steps=config.pretrain_steps, learning_rate=config.pretrain_learning_rate, **train
  )
  base_logits = right_sequence_logits(graphdef, base, spec)
  samples, dropped = synthesize(graphdef, base, config)
  start = jax.tree.map(jnp.copy, base)  # The train step donates its state.
  ssd = fit(graphdef, start, samples, steps=config.sft_steps, learning_rate=config.sft_learning_rate, **train)
  curves = {
    "trained_base": success_curve(base_logits, config),
    "trained_ssd": success_curve(right_sequence_logits(graphdef, ssd, spec), config),
    **{f"tabular_{name}": success_curve(x, config) for name, x in tabular_logits(config).items()},
  }
  best = {
    model: {metric: _best(values, config.eval_temperatures) for metric, values in curve.items()}
    for model, curve in curves.items()
  }
  return dict(temperatures=list(config.eval_temperatures), curves=curves, best=best, samples_dropped=dropped)


def summary_table(result: dict) -> str:
  """One line per model: each pass@k at its own best T_eval, and the SSD - base gaps, trained and tabular."""
  lines = [f"{'model':<14}" + "".join(f"{m:>14}{'':9}" for m in next(iter(result["best"].values())))]
  for model, metrics in result["best"].items():
    cells = "".join(f"{b['value']:>14.4f} @ T={b['t_eval']:<4g}" for b in metrics.values())
    lines.append(f"{model:<14}{cells}")
  for kind in ("trained", "tabular"):
    base, ssd = result["best"][f"{kind}_base"], result["best"][f"{kind}_ssd"]
    gaps = ", ".join(f"{m} {ssd[m]['value'] - base[m]['value']:+.4f}" for m in base)
    lines.append(f"SSD - base, each at its best T_eval ({kind}): {gaps}")
  return "\n".join(lines)


def _best(values: list[float], temperatures: tuple[float, ...]) -> dict[str, float]:
  i = int(np.argmax(values))
  return {"t_eval": temperatures[i], "value": values[i]}
