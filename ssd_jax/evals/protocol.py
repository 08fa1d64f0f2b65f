"""The evaluation protocol: a decoding grid, and the best setting (and checkpoint) of a model chosen on dev.

A method must beat the base at the base's own best decoding (the SSD paper's rule). So every model is
sampled at every setting of a grid (T_eval values x top-k/top-p options, plus named settings such as
a model's official decoding), possibly at several checkpoints; `select_best` picks one candidate per
model from its dev-split numbers alone, and the report then reads that candidate's test-split numbers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ssd_jax.evals.pass_at_k import pass_at_k

_TIE_TOLERANCE = 1e-9
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # A named setting's results folder.


@dataclasses.dataclass(frozen=True)
class DecodingSetting:
  """One way to decode: temperature, then top-k and top-p truncation (0 / 1.0 switch them off).

  Attributes:
    temperature: T_eval, >= 0 (0 is greedy decoding).
    top_k: keep the k most likely tokens; 0 keeps all.
    top_p: keep the smallest set of tokens with this much probability; 1.0 keeps all.
    name: a named setting's name (e.g. 'official'); empty for a grid point.
  """

  temperature: float
  top_k: int = 0
  top_p: float = 1.0
  name: str = ""

  def __post_init__(self):
    if not self.temperature >= 0:
      raise ValueError(f"decoding temperature must be >= 0 (0 = greedy), got {self.temperature}")
    if self.top_k < 0:
      raise ValueError(f"decoding top_k must be >= 0, got {self.top_k}")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"decoding top_p must be in (0, 1], got {self.top_p}")
    if self.name and not _SAFE_NAME.fullmatch(self.name):
      raise ValueError(
        "a setting's name starts with a letter or digit and holds only those and '_.-' (it names a results folder), "
        f"got {self.name!r}"
      )

  @property
  def label(self) -> str:
    """A file-name-safe label, e.g. 'T0.7_k20_p0.8' or 'official_T0.7_k20_p0.8'."""
    point = f"T{self.temperature:g}_k{self.top_k}_p{self.top_p:g}"
    return f"{self.name}_{point}" if self.name else point


@dataclasses.dataclass(frozen=True)
class DecodingGrid:
  """Named settings first, then every temperature with every truncation, in the order given.

  A grid point that decodes as a named setting does is sampled once, under the name.
  """

  temperatures: tuple[float, ...]
  truncations: tuple[tuple[int, float], ...]
  named: tuple[DecodingSetting, ...] = ()

  def settings(self) -> list[DecodingSetting]:
    named = {dataclasses.replace(s, name="") for s in self.named}
    grid = [DecodingSetting(t, k, p) for t in self.temperatures for k, p in self.truncations]
    settings = [*self.named, *(s for s in grid if s not in named)]
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
      raise ValueError(f"decoding grid repeats a setting: {labels}")
    return settings


def _items(text: str) -> list[str]:
  return [part.strip() for part in text.split(",") if part.strip()]


def _truncation(text: str) -> tuple[int, float]:
  try:
    top_k, top_p = text.split("/")
    return int(top_k), float(top_p)
  except ValueError:
    raise ValueError(f"field 'eval.grid.truncations': expected 'top_k/top_p' such as '20/0.8', got {text!r}") from None


def parse_grid(temperatures: str, truncations: str, named: str, default_truncation: tuple[int, float]) -> DecodingGrid:
  """Builds a grid from config strings.

  Args:
    temperatures: comma-separated T_eval values, e.g. '0.5,0.7,0.9,1.1'.
    truncations: comma-separated 'top_k/top_p' pairs, e.g. '20/0.8,0/1.0'; empty: `default_truncation`.
    named: comma-separated 'name=T/top_k/top_p' settings, e.g. 'official=0.7/20/0.8'; may be empty.
    default_truncation: (top_k, top_p) used when `truncations` is empty.

  Raises:
    ValueError: naming the field and the text that does not parse.
  """
  try:
    temps = tuple(float(t) for t in _items(temperatures))
  except ValueError:
    raise ValueError(
      f"field 'eval.grid.temperatures': expected comma-separated numbers, got {temperatures!r}"
    ) from None
  truncs = tuple(_truncation(t) for t in _items(truncations))
  for field, values in (("temperatures", [(t, 0, 1.0) for t in temps]), ("truncations", [(1.0, *t) for t in truncs])):
    for value in values:
      try:
        DecodingSetting(*value)
      except ValueError as error:
        raise ValueError(f"field 'eval.grid.{field}': {error}") from None
  settings = []
  for item in _items(named):
    name, _, rest = item.partition("=")
    parts = rest.split("/")
    if not name.strip() or len(parts) != 3:
      raise ValueError(f"field 'eval.grid.named': expected 'name=T/top_k/top_p', got {item!r}")
    try:
      settings.append(DecodingSetting(float(parts[0]), int(parts[1]), float(parts[2]), name.strip()))
    except ValueError as error:
      raise ValueError(f"field 'eval.grid.named': {item!r}: {error}") from None
  if not temps and not settings:
    raise ValueError("field 'eval.grid.temperatures': the grid needs at least one temperature or named setting")
  grid = DecodingGrid(temps, truncs or (default_truncation,), tuple(settings))
  try:
    grid.settings()
  except ValueError as error:
    raise ValueError(f"fields 'eval.grid.*': {error}") from None
  return grid


def counts_by_task(per_problem: Sequence[Mapping]) -> dict[str, tuple[int, int]]:
  """task_id -> (n, c) from a summary's `per_problem` records."""
  return {p["task_id"]: (int(p["n"]), int(p["c"])) for p in per_problem}


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], task_ids: Sequence[str], k: int) -> float:
  """Mean pass@k over `task_ids` (each must have been evaluated with n >= k)."""
  missing = [t for t in task_ids if t not in counts]
  if missing:
    raise ValueError(f"no results for {len(missing)} of the requested problems, e.g. {missing[0]!r}")
  return float(np.mean([pass_at_k(*counts[t], k) for t in task_ids]))


@dataclasses.dataclass(frozen=True)
class Selection:
  """The chosen candidate and every candidate's dev scores.

  Attributes:
    best: the chosen candidate's key.
    metric_k: k of the pass@k it was chosen by.
    scores: key -> (dev pass@metric_k, dev pass@n), in candidate order.
  """

  best: str
  metric_k: int
  scores: dict[str, tuple[float, float]]


def select_best(
  candidates: Mapping[str, Mapping[str, tuple[int, int]]], dev_ids: Sequence[str], metric_k: int = 1
) -> Selection:
  """Chooses the candidate with the highest mean pass@metric_k on the dev problems.

  Tie rule: candidates whose scores are equal (within 1e-9) are ordered by dev pass@n (n = the
  smallest sample count on dev), higher first; if that ties too, the earliest candidate in the
  mapping's order wins. Callers order candidates by preference: the grid's order for settings
  (named settings first), the final checkpoint first for checkpoints.

  Args:
    candidates: key (a setting label, or 'checkpoint/setting') -> task_id -> (n, c).
    dev_ids: the dev split's task ids; only these are looked at.
    metric_k: k of the selection metric.

  Raises:
    ValueError: no candidates, no dev problems, or a candidate lacks a dev problem.
  """
  if not candidates:
    raise ValueError("select_best: no candidates")
  if not dev_ids:
    raise ValueError("select_best: the dev split is empty")
  scores = {}
  for key, counts in candidates.items():
    missing = [t for t in dev_ids if t not in counts]
    if missing:
      raise ValueError(f"candidate {key!r} has no results for {len(missing)} dev problems, e.g. {missing[:3]}")
    n = min(counts[t][0] for t in dev_ids)
    if n < metric_k:
      raise ValueError(f"candidate {key!r}: pass@{metric_k} needs at least {metric_k} samples per problem")
    scores[key] = (mean_pass_at_k(counts, dev_ids, metric_k), mean_pass_at_k(counts, dev_ids, n))
  best_key = None
  for key, (score, tie_break) in scores.items():
    if best_key is None:
      best_key = key
      continue
    best_score, best_tie_break = scores[best_key]
    if score > best_score + _TIE_TOLERANCE or (
      abs(score - best_score) <= _TIE_TOLERANCE and tie_break > best_tie_break + _TIE_TOLERANCE
    ):
      best_key = key
  return Selection(best_key, metric_k, scores)
