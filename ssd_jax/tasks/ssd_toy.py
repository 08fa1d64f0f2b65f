"""The SSD paper's lock/fork toy: fixed-length sequences whose positions are locks or forks.

A *lock* has one right token and a low-probability distractor tail; a *fork* has several plausible branches, of
which one is right for a given problem (the problems enumerate every assignment of right branches, uniformly),
plus the same kind of tail. A sample succeeds when every token is right. Low temperature protects the locks
from their tails but collapses the forks onto their likeliest branch; high temperature explores the forks but
lets the lock tails in. No single global decoding setting serves both (the precision-exploration conflict);
SSD's samples at T_train with truncation, learned back, cut the lock tails while keeping the forks open.

Token ids: 0 pad, 1 start; every lock position has its own right token, every fork position its own branch
tokens, and all positions share one pool of distractor tokens. The target distribution of a position does not
depend on the tokens before it, so the exact success probability of a problem is a product over positions.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

PAD_ID, START_ID = 0, 1
_FIRST_CONTENT_ID = 2


@dataclasses.dataclass(frozen=True)
class ToySpec:
  """The toy's shape and distributions.

  Attributes:
    pattern: one letter per position, 'L' (lock) or 'F' (fork).
    lock_right: probability of a lock's right token; the rest is the distractor tail.
    fork_branches: probabilities of a fork's branches (most likely first); the rest is the distractor tail.
    num_distractors: size of the shared distractor pool; a position's tail spreads over all of it with Zipf
      weights (1 / rank), a long tail without ties, so a top-k cut keeps a definite set.
  """

  pattern: str = "LLFLLFLL"
  lock_right: float = 0.8
  fork_branches: tuple[float, ...] = (0.4, 0.25, 0.15, 0.1)
  num_distractors: int = 60

  def __post_init__(self):
    if not self.pattern or set(self.pattern) - {"L", "F"}:
      raise ValueError(f"pattern must be a non-empty string of 'L' and 'F', got {self.pattern!r}")
    if not 0 < self.lock_right < 1:
      raise ValueError(f"lock_right must be in (0, 1), got {self.lock_right}")
    branches = np.asarray(self.fork_branches, np.float64)
    if len(branches) < 2 or (branches <= 0).any() or branches.sum() >= 1:
      raise ValueError(f"fork_branches must be >= 2 positive probabilities summing below 1, got {self.fork_branches}")
    if self.num_distractors < 1:
      raise ValueError(f"num_distractors must be >= 1, got {self.num_distractors}")

  @property
  def length(self) -> int:
    return len(self.pattern)

  @property
  def num_branches(self) -> int:
    return len(self.fork_branches)

  def position_tokens(self) -> list[list[int]]:
    """The non-distractor token ids of each position: [right] for a lock, the branches for a fork."""
    out, next_id = [], _FIRST_CONTENT_ID + self.num_distractors
    for kind in self.pattern:
      width = 1 if kind == "L" else self.num_branches
      out.append(list(range(next_id, next_id + width)))
      next_id += width
    return out

  @property
  def distractor_ids(self) -> np.ndarray:
    return np.arange(_FIRST_CONTENT_ID, _FIRST_CONTENT_ID + self.num_distractors)

  @property
  def vocab_size(self) -> int:
    return _FIRST_CONTENT_ID + self.num_distractors + sum(len(t) for t in self.position_tokens())


def target_distributions(spec: ToySpec) -> np.ndarray:
  """float64 [length, vocab]: the next-token distribution the corpus draws position t from."""
  dists = np.zeros((spec.length, spec.vocab_size))
  zipf = 1.0 / np.arange(1, spec.num_distractors + 1)
  zipf /= zipf.sum()
  for t, (kind, tokens) in enumerate(zip(spec.pattern, spec.position_tokens(), strict=True)):
    head = [spec.lock_right] if kind == "L" else list(spec.fork_branches)
    dists[t, tokens] = head
    dists[t, spec.distractor_ids] = (1.0 - sum(head)) * zipf
  return dists


def right_sequences(spec: ToySpec) -> np.ndarray:
  """int32 [problems, length]: each problem's right sequence, one problem per assignment of right branches."""
  return np.array(list(itertools.product(*spec.position_tokens())), np.int32)


def sample_corpus(spec: ToySpec, num_sequences: int, seed: int) -> np.ndarray:
  """int32 [num_sequences, length]: i.i.d. draws from `target_distributions` (the pre-training corpus)."""
  rng = np.random.default_rng(seed)
  dists = target_distributions(spec)
  columns = [rng.choice(spec.vocab_size, size=num_sequences, p=d) for d in dists]
  return np.stack(columns, axis=1).astype(np.int32)


def pass_at_k(sequence_probs: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
  """Exact pass@k averaged over problems, from each problem's probability of drawing its right sequence.

  Args:
    sequence_probs: float [..., problems] probability that one sample is the problem's right sequence.
    ks: the k values.

  Returns:
    {k: float array [...]}: mean over problems of 1 - (1 - q)^k.
  """
  q = np.clip(np.asarray(sequence_probs, np.float64), 0.0, 1.0)
  return {k: (1.0 - (1.0 - q) ** k).mean(axis=-1) for k in ks}
