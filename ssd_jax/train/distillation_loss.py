"""The teacher-student loss a config selects: divergence kind, form, temperature, importance weight.

`DivergenceConfig` is validated on construction (a ValueError names the bad field);
`distillation_loss` dispatches on its `form`, always from final hidden states and unembedding
matrices so that every form has the same inputs:

* 'full': full-vocabulary logits materialised at once (small vocabularies, tests);
* 'chunked': full vocabulary, `chunk_size` tokens at a time (no [batch, length, vocab] float32);
* 'topk': the student's `top_k` tokens plus one tail bucket, chunked likewise;
* 'sampled': the token-level estimator on the sampled tokens (`sampled_divergence`).
"""

from __future__ import annotations

import dataclasses

import jax

from ssd_jax.train.cross_entropy import chunked_token_logprobs, project_to_logits
from ssd_jax.train.divergence_losses import chunked_divergence, divergence_from_logits
from ssd_jax.train.divergences import DIVERGENCE_KINDS
from ssd_jax.train.sampled_divergence import sampled_token_divergence

DIVERGENCE_FORMS = ("full", "chunked", "topk", "sampled")


@dataclasses.dataclass(frozen=True)
class DivergenceConfig:
  """How the student is pulled towards the teacher.

  Attributes:
    kind: 'forward_kl' = KL(teacher || student), 'reverse_kl' = KL(student || teacher), or
      'jsd' = generalized JSD with teacher weight `beta` (0 and 1 are the forward and reverse KL).
    beta: JSD teacher weight in [0, 1]; unused by the KLs.
    form: 'full', 'chunked', 'topk' or 'sampled' (see the module docstring).
    top_k: student top-k for form 'topk' (>= 1); must be None for the other forms.
    temperature: > 0, divides student and teacher logits in the loss.
    is_clip: None for no importance weighting; else > 0, and each token's loss is multiplied
      by min(exp(log p_student(token) - behaviour_logprob), is_clip) under stop_gradient
      (pass `math.inf` for an unclipped weight). log p_student is at `temperature`, untruncated, and so is
      behaviour_logprob (under the parameters that sampled: `distill_step.make_behaviour_logprobs`), so the
      weight is 1 until the student moves, whatever truncation the rollouts were drawn with.
    chunk_size: tokens per chunk for the chunked forms, >= 1.
  """

  kind: str = "jsd"
  beta: float = 0.5
  form: str = "chunked"
  top_k: int | None = None
  temperature: float = 1.0
  is_clip: float | None = None
  chunk_size: int = 1024

  def __post_init__(self):
    if self.kind not in DIVERGENCE_KINDS:
      raise ValueError(f"DivergenceConfig.kind must be one of {DIVERGENCE_KINDS}, got {self.kind!r}")
    if not 0.0 <= self.beta <= 1.0:
      raise ValueError(f"DivergenceConfig.beta must be in [0, 1], got {self.beta}")
    if self.form not in DIVERGENCE_FORMS:
      raise ValueError(f"DivergenceConfig.form must be one of {DIVERGENCE_FORMS}, got {self.form!r}")
    if self.form == "topk":
      if self.top_k is None or self.top_k < 1:
        raise ValueError(f"DivergenceConfig.top_k must be >= 1 for form 'topk', got {self.top_k}")
    elif self.top_k is not None:
      raise ValueError(f"DivergenceConfig.top_k must be None for form {self.form!r}, got {self.top_k}")
    if not self.temperature > 0:
      raise ValueError(f"DivergenceConfig.temperature must be > 0, got {self.temperature}")
    if self.is_clip is not None and not self.is_clip > 0:
      raise ValueError(f"DivergenceConfig.is_clip must be > 0 or None, got {self.is_clip}")
    if self.chunk_size < 1:
      raise ValueError(f"DivergenceConfig.chunk_size must be >= 1, got {self.chunk_size}")


def distillation_loss(
  config: DivergenceConfig,
  *,
  student_hidden: jax.Array,
  student_unembedding: jax.Array,
  teacher_hidden: jax.Array,
  teacher_unembedding: jax.Array,
  tokens: jax.Array,
  mask: jax.Array,
  behaviour_logprob: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Masked divergence loss per `config`, (sum, count).

  Args:
    config: the loss settings.
    student_hidden: [batch, length, embed] student final hidden states at the response positions
      (the state that predicts each response token).
    student_unembedding: [embed, vocab].
    teacher_hidden: [batch, length, teacher_embed] teacher hidden states aligned to the same
      response tokens; gradient stopped.
    teacher_unembedding: [teacher_embed, vocab]; gradient stopped.
    tokens: int [batch, length] the sampled response tokens.
    mask: bool or float [batch, length], nonzero on response tokens.
    behaviour_logprob: float [batch, length] log-probs of the tokens under the parameters that sampled them,
      at `config.temperature`, untruncated; required when `config.is_clip` is set, ignored otherwise.

  Returns:
    (sum, count), float32 scalars; the loss is sum / count.
  """
  if config.is_clip is None:
    behaviour_logprob = None
  elif behaviour_logprob is None:
    raise ValueError("DivergenceConfig.is_clip is set, so behaviour_logprob must be given")
  common = dict(kind=config.kind, beta=config.beta, behaviour_logprob=behaviour_logprob, is_clip=config.is_clip)
  if config.form == "full":
    return divergence_from_logits(
      project_to_logits(student_hidden, student_unembedding),
      project_to_logits(teacher_hidden, teacher_unembedding),
      mask,
      temperature=config.temperature,
      tokens=tokens,
      **common,
    )
  if config.form in ("chunked", "topk"):
    return chunked_divergence(
      student_hidden,
      student_unembedding,
      teacher_hidden,
      teacher_unembedding,
      mask,
      chunk_size=config.chunk_size,
      temperature=config.temperature,
      top_k=config.top_k,
      tokens=tokens,
      **common,
    )
  student_logprob, teacher_logprob = (
    chunked_token_logprobs(hidden, unembedding, tokens, chunk_size=config.chunk_size, temperature=config.temperature)
    for hidden, unembedding in (
      (student_hidden, student_unembedding),
      (jax.lax.stop_gradient(teacher_hidden), jax.lax.stop_gradient(teacher_unembedding)),
    )
  )
  return sampled_token_divergence(student_logprob, teacher_logprob, mask, **common)
