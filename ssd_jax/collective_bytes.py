"""Bytes moved by the collectives of a compiled XLA program, read from its HLO text.

Sums the result sizes of every all-reduce / all-gather / reduce-scatter / all-to-all / ragged all-to-all /
collective-permute, each multiplied by the trip count of the loops it sits in (a scan's body runs once per
chunk), so the figure is per device per call. A ragged all-to-all counts its whole output buffer (sized for the
worst case), an upper bound on what it moves. Used by the plan stage and the loss-chunking benchmark.
"""

from __future__ import annotations

import collections
import re

_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "ragged-all-to-all", "all-to-all", "collective-permute")
_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s")
_OP = re.compile(r"=\s*(.+?)\s+(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
_WHILE = re.compile(r"\bwhile\(.*body=%?([\w.\-]+)")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_CALL = re.compile(r"\b(?:calls|to_apply)=%?([\w.\-]+)")


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    count = 1
    for d in filter(None, dims.split(",")):
      count *= int(d)
    total += count * _DTYPE_BYTES.get(dtype, 4)
  return total


def collective_bytes(hlo: str) -> dict[str, int]:
  """Bytes of each collective kind in an HLO module's text, loop bodies counted once per trip."""
  computations: dict[str, list[str]] = {}
  entry, current = None, None
  for line in hlo.splitlines():
    match = _COMPUTATION.match(line)
    if match and line.rstrip().endswith("{"):  # A computation header (instructions are indented).
      current = match.group(1)
      computations[current] = []
      entry = current if line.startswith("ENTRY") else entry
    elif current is not None:
      computations[current].append(line)
  multiplier = collections.Counter({entry: 1})
  order = [entry]
  for name in order:  # Breadth-first from the entry: callees inherit their callers' trip counts.
    for line in computations.get(name, []):
      loop = _WHILE.search(line)
      if loop:
        trip = _TRIP.search(line)
        multiplier[loop.group(1)] += multiplier[name] * (int(trip.group(1)) if trip else 1)
        order.append(loop.group(1))
      for callee in _CALL.findall(line):
        multiplier[callee] += multiplier[name]
        order.append(callee)
  totals = collections.Counter()
  for name, lines in computations.items():
    for line in lines:
      op = _OP.search(line)
      if op and multiplier[name]:
        totals[op.group(2)] += _shape_bytes(op.group(1)) * multiplier[name]
  return dict(totals)
