"""The SSD toy: its distributions, and the exact evaluator against a float64 numpy computation."""

import numpy as np
import pytest

from ssd_jax.model import presets
from ssd_jax.pipeline.ssd_toy_run import ToyRunConfig, run_toy, summary_table
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.sampling.sequence_probability import sequence_probabilities, truncated_distributions
from ssd_jax.tasks import ssd_toy


def _numpy_truncated(logits, temperature, top_k, top_p):
  """float64 reference of the truncation contract: temperature, top-k, then top-p among the survivors."""
  d = np.asarray(logits, np.float64) / temperature
  order = np.argsort(-d, kind="stable")
  probs = np.exp(d - d.max())
  kept = np.zeros_like(d, bool)
  kept[order[: top_k if top_k > 0 else len(d)]] = True
  survivors = np.where(kept, probs, 0.0) / np.where(kept, probs, 0.0).sum()
  mass = 0.0
  for i in order:
    if not kept[i]:
      break
    if mass >= top_p:
      kept[i] = False
    mass += survivors[i]
  out = np.where(kept, probs, 0.0)
  return out / out.sum()


def test_distributions_have_the_documented_locks_and_forks():
  spec = ssd_toy.ToySpec(pattern="LFL", lock_right=0.7, fork_branches=(0.5, 0.3), num_distractors=4)
  p = ssd_toy.target_distributions(spec)
  np.testing.assert_allclose(p.sum(axis=1), 1.0)
  assert p[:, [ssd_toy.PAD_ID, ssd_toy.START_ID]].max() == 0
  tail = p[:, spec.distractor_ids]
  np.testing.assert_allclose(tail.sum(axis=1), [0.3, 0.2, 0.3])
  assert (np.diff(tail, axis=1) < 0).all()  # A Zipf tail: no ties for a top-k cut to keep.
  sequences = ssd_toy.right_sequences(spec)
  assert sequences.shape == (2, 3)  # One problem per right branch of the single fork.
  np.testing.assert_allclose(p[np.arange(3), sequences].prod(axis=1), [0.7 * 0.5 * 0.7, 0.7 * 0.3 * 0.7])
  corpus = ssd_toy.sample_corpus(spec, 20_000, seed=0)
  np.testing.assert_allclose(np.mean(corpus[:, 1] == sequences[0, 1]), 0.5, atol=0.02)


def test_bad_spec_is_refused():
  with pytest.raises(ValueError, match="fork_branches"):
    ssd_toy.ToySpec(fork_branches=(0.6, 0.5))


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.6, 0, 0.8), (1.3, 4, 0.6)])
def test_exact_sequence_probability_matches_numpy(temperature, top_k, top_p):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 9)) * 2.0  # Hand-made next-token logits, no ties.
  tokens = rng.integers(0, 9, size=(3, 4))
  params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
  reference = np.array(
    [[_numpy_truncated(logits[r, t], temperature, top_k, top_p) for t in range(4)] for r in range(3)]
  )
  np.testing.assert_allclose(truncated_distributions(logits, params), reference, atol=1e-6)
  expected = np.prod(np.take_along_axis(reference, tokens[..., None], axis=-1)[..., 0], axis=-1)
  np.testing.assert_allclose(sequence_probabilities(logits, tokens, params), expected, rtol=1e-5)
  passed = ssd_toy.pass_at_k(expected, (1, 4))
  np.testing.assert_allclose(passed[4], np.mean(1 - (1 - expected) ** 4))


def test_truncation_at_t_train_cuts_the_lock_tail_and_keeps_the_fork():
  spec = ssd_toy.ToySpec()
  p = ssd_toy.target_distributions(spec)
  q = truncated_distributions(np.log(np.maximum(p, 1e-30)), SamplingParams(temperature=1.0, top_k=20, top_p=0.8))
  lock, fork = spec.pattern.index("L"), spec.pattern.index("F")
  assert q[lock, spec.distractor_ids].sum() < 0.25 * p[lock, spec.distractor_ids].sum()
  assert (q[fork] > 0).sum() >= spec.num_branches - 1


@pytest.mark.slow
def test_toy_run_end_to_end_is_shaped_and_tabular_ssd_wins():
  config = ToyRunConfig(
    spec=ssd_toy.ToySpec(),
    train_decoding=SamplingParams(temperature=1.0, top_k=20, top_p=0.8),
    eval_top_k=20,
    eval_top_p=0.8,
    eval_temperatures=(0.7, 1.0, 2.0, 3.0),
    ks=(1, 8),
    corpus_size=256,
    pretrain_steps=4,
    pretrain_learning_rate=3e-3,
    num_samples=64,
    sft_steps=2,
    sft_learning_rate=1e-3,
    batch_size=32,
    seed=0,
  )
  result = run_toy(presets.get("tiny_qwen3", dtype="float32", param_dtype="float32"), config)
  assert set(result["curves"]) == {"trained_base", "trained_ssd", "tabular_base", "tabular_ssd"}
  assert all(len(v) == 4 for curve in result["curves"].values() for v in curve.values())
  assert result["samples_dropped"] == 0  # No end token: every sample runs to the toy's length.
  best = result["best"]
  assert best["tabular_ssd"]["pass@8"]["value"] > best["tabular_base"]["pass@8"]["value"] + 0.01
  assert "SSD - base" in summary_table(result)
