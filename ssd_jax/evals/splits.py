"""A fixed, recorded dev/test split of an evaluation set by problem id.

Decoding settings and checkpoints are chosen on the dev problems and every reported number comes from
the test problems, so a choice never sees the problems it is judged on. The split is a pure function
of (task ids, seed, dev fraction, strata): each id gets a rank from a hash of the seed and the id, and
the lowest-ranked share of each stratum (e.g. each difficulty) goes to dev. Reordering the problem list
does not move any problem; it is written next to the results so a later run can check it reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from collections.abc import Mapping, Sequence

from ssd_jax.atomic_write import atomic_open

SPLIT_FILE = "split.json"


@dataclasses.dataclass(frozen=True)
class Split:
  """Disjoint dev and test problem ids (each sorted) and how they were drawn."""

  dev: tuple[str, ...]
  test: tuple[str, ...]
  seed: int
  dev_fraction: float

  def __post_init__(self):
    shared = set(self.dev) & set(self.test)
    if shared:
      raise ValueError(f"split: problems in both dev and test: {sorted(shared)[:5]}")
    for part in ("dev", "test"):
      if not getattr(self, part):
        raise ValueError(f"split: the {part} part is empty (a recorded split.json edited by hand?)")
      if len(set(getattr(self, part))) != len(getattr(self, part)):
        raise ValueError(f"split: problem ids repeat in the {part} part")

  def ids(self, part: str) -> tuple[str, ...]:
    """The ids of 'dev' or 'test'."""
    if part not in ("dev", "test"):
      raise ValueError(f"split part must be 'dev' or 'test', got {part!r}")
    return self.dev if part == "dev" else self.test

  def to_json(self) -> dict:
    return dataclasses.asdict(self) | {"dev": list(self.dev), "test": list(self.test)}

  @classmethod
  def from_json(cls, record: Mapping) -> Split:
    return cls(tuple(record["dev"]), tuple(record["test"]), int(record["seed"]), float(record["dev_fraction"]))


def _rank(seed: int, task_id: str) -> bytes:
  return hashlib.sha256(f"{seed}\0{task_id}".encode()).digest()


_SINGLES = object()


def split_problems(
  task_ids: Sequence[str], dev_fraction: float = 0.5, seed: int = 0, strata: Mapping[str, str] | None = None
) -> Split:
  """Splits problem ids into dev and test.

  Args:
    task_ids: the evaluation problems' ids (unique).
    dev_fraction: share of each stratum that goes to dev, in (0, 1); a share's fraction of a problem rounds up
      with that probability, drawn from the seed (an exact share is kept).
    seed: selects the split; the same ids and seed always give the same split.
    strata: task id -> label (e.g. difficulty) so every label is split in the same proportion;
      None treats all problems as one stratum. Labels held by one problem only form one stratum together.

  Returns:
    The split; with at least two problems in a stratum, both parts get at least one of it.

  Raises:
    ValueError: a bad fraction, repeated ids, or fewer than two problems (a part would be empty).
  """
  if not 0 < dev_fraction < 1:
    raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
  if len(set(task_ids)) != len(task_ids):
    raise ValueError("split_problems: task ids repeat")
  groups: dict[object, list[str]] = {}
  for task_id in task_ids:
    groups.setdefault(strata.get(task_id, "") if strata else "", []).append(task_id)
  # A stratum of one problem cannot be split; rounded alone it would always land in the same part, so
  # such problems are split together.
  singles = [members[0] for members in groups.values() if len(members) == 1]
  groups = {label: members for label, members in groups.items() if len(members) > 1}
  if singles:
    groups[_SINGLES] = singles  # A key no label can be (a None label merged with them lost its problems).
  dev, test = [], []
  for members in groups.values():
    ranked = sorted(members, key=lambda task_id: _rank(seed, task_id))
    # The share's fraction rounds up with that probability, drawn from the seed and the stratum's members: a
    # nearest rounding (half to even) moved every stratum of one size the same way (3 strata of 5 gave 6+9).
    share = round(dev_fraction * len(ranked), 9)  # 0.3 * 10 is 3, not 3 and a hair.
    draw = int.from_bytes(hashlib.sha256("\0".join([str(seed), "round", *sorted(ranked)]).encode()).digest()[:8], "big")
    count = math.floor(share) + (draw < (share - math.floor(share)) * 2**64)
    if len(ranked) >= 2:
      count = min(max(count, 1), len(ranked) - 1)
    dev += ranked[:count]
    test += ranked[count:]
  if not dev or not test:
    raise ValueError(
      f"split_problems: {len(task_ids)} problem(s) leave the {'dev' if not dev else 'test'} part empty; decoding "
      "would be chosen on, or reported for, no problem (evaluate at least two problems)"
    )
  return Split(tuple(sorted(dev)), tuple(sorted(test)), seed, dev_fraction)


def write_split(split: Split, path: str | pathlib.Path) -> None:
  with atomic_open(path) as f:
    json.dump(split.to_json(), f, indent=2)


def record_split(path: str | pathlib.Path, split: Split) -> Split:
  """Writes `split` to `path`, or checks that the split recorded there is the same one.

  Raises:
    ValueError: the recorded split covers other problems or was drawn with another seed or fraction.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    path.parent.mkdir(parents=True, exist_ok=True)
    write_split(split, path)
    return split
  recorded = Split.from_json(json.loads(path.read_text()))
  if recorded != split:
    raise ValueError(
      f"the split recorded in {path} (seed {recorded.seed}, dev fraction {recorded.dev_fraction}, "
      f"{len(recorded.dev)}+{len(recorded.test)} problems) differs from this run's (seed {split.seed}, dev fraction "
      f"{split.dev_fraction}, {len(split.dev)}+{len(split.test)} problems); use a new workdir or the same problems"
    )
  return recorded
