"""Tiny random checkpoints for the sampler tests, built in transformers and loaded into ssd_jax."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import nnx

from ssd_jax.model import hf

VOCAB = 512
# Prompts of different lengths (all within the 8-token bucket).
PROMPTS = [[5, 17, 300, 42, 9, 77, 1], [250, 3], [99, 100, 101, 102], [7]]


def hf_model(kind: str = "qwen3", seed: int = 0, head_dim: int = 16):
  """A random Qwen3ForCausalLM (tied) or LlamaForCausalLM (untied), float32."""
  common = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=head_dim,
    max_position_embeddings=256,
    initializer_range=0.1,
    pad_token_id=0,
    bos_token_id=None,
    eos_token_id=None,
  )
  if kind == "qwen3":
    config = transformers.Qwen3Config(rope_theta=10_000.0, tie_word_embeddings=True, **common)
    cls = transformers.Qwen3ForCausalLM
  else:
    config = transformers.LlamaConfig(rope_theta=500_000.0, tie_word_embeddings=False, **common)
    cls = transformers.LlamaForCausalLM
  torch.manual_seed(seed)
  return cls(config).eval()


def load_split(hf_module, directory):
  """Saves `hf_module` and loads it as (graphdef, state, cfg) in float32."""
  hf_module.save_pretrained(directory)
  model, cfg = hf.load_hf(str(directory), dtype="float32", param_dtype="float32")
  graphdef, state = nnx.split(model)
  return graphdef, state, cfg


@jax.jit(static_argnums=0)
def _full_forward(graphdef, state, tokens, segment_ids):
  positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
  logits, _ = nnx.merge(graphdef, state)(tokens, positions, segment_ids=segment_ids)
  return logits


def full_forward_logits(graphdef, state, sequence, width: int = 32) -> np.ndarray:
  """float32 [len(sequence), vocab] logits of one uncached forward (right-padded to `width`)."""
  tokens = np.zeros((1, width), np.int32)
  tokens[0, : len(sequence)] = sequence
  segment_ids = (np.arange(width) < len(sequence)).astype(np.int32)[None]
  logits = _full_forward(graphdef, state, jnp.asarray(tokens), jnp.asarray(segment_ids))
  return np.asarray(logits)[0, : len(sequence)]


def greedy_by_full_forwards(graphdef, state, prompt, max_new_tokens: int) -> list[int]:
  """Greedy completion by re-running the whole sequence each step (no KV cache)."""
  sequence = list(prompt)
  for _ in range(max_new_tokens):
    sequence.append(int(np.argmax(full_forward_logits(graphdef, state, sequence)[-1])))
  return sequence[len(prompt) :]
