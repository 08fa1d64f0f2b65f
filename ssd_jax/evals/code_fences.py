"""The fenced code blocks of a completion, found in one pass over its lines.

An opening fence that nothing closes opens no block; the lines after it are read again, as a regular expression
with a lazy body would read them, but whether anything closes it is looked up, not scanned for, so thousands of
unclosed fences (a degenerate completion) cost no more than one.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import re
from collections.abc import Iterable

# The indentation before an opening fence, possessive: a shorter one opens no other fence, and backtracking into
# it would read a long run of blanks once per blank.
_INDENT = r"(?P<indent>[ \t]*+)"
# A fence may end a line of prose ("Here it is: ```python"), as LiveCodeBench, which takes any line holding ``` for
# a fence, reads it; then a one-word tag must follow it at once, so a sentence that mentions fences ("wrap it in
# ``` fences.", "... between ```") opens none.
_PROSE = r"[^\n]*?[ \t:](?=(?P<after>[`~])(?P=after){2,}[\w+.#-]+[ \t]*\r?\n)"
# An opening fence (three or more backticks or tildes, optional info string), whole: a longer fence is not read
# as a shorter one with the rest for its info string.
_FENCE = r"(?P<fence>(?P<char>[`~])(?P=char){2,})(?!(?P=char))(?P<info>[^\n]*)\n"
# The two readings of a line as an opening fence, the one ending prose first, as one regular expression with the
# prose optional tried them.
_OPENINGS = (re.compile(_INDENT + _PROSE + _FENCE), re.compile(_INDENT + _FENCE))
# A closing fence line: a run of fence characters, alone or going on after a space ("``` That's it."), as
# LiveCodeBench, which takes any line holding ``` for a fence, reads it; its line may end in CRLF. Text right
# after the run ("```python") never closes a block.
_CLOSING = re.compile(r"[ \t]*(?P<run>(?P<char>[`~])(?P=char){2,})(?:[ \t].*)?\r?")
# How many closing fences after a block may be lines of its code (see `Block.later_closings`).
_READ_ON = 3
# In code, what starts a string literal or a comment; a string ends at its quote, not at an escaped one.
_STRING_START = re.compile(r"#|'''|\"\"\"|'|\"")
_STRING_END = {quote: re.compile(rf"(?:[^\\]|\\.)*?{quote}") for quote in ("'", '"', "'''", '"""')}


@dataclasses.dataclass(frozen=True)
class Block:
  """A fenced block.

  Attributes:
    text: the completion it is in.
    start: where the line of its opening fence starts.
    body_start: where its body starts, the line after the opening fence.
    body: its lines; with a fence at the end of its last line, that line's code before the fence.
    end: where the line of its closing fence ends, before the newline; the end of `text` when left open.
    indent: the indentation of the opening fence.
    fence: the opening fence.
    info: the opening fence's info string.
    closed: whether a closing fence ends it.
    later_closings: where the first lines after it that are fences closing it start (a fence at a line's end is
      none here), up to three, none past where the third block after it starts. A fence line in a string literal
      of its code (a docstring's example) may have closed it early; the fence lines after it in that code each
      open or close one of the blocks after it, so its code reaches no further.
  """

  text: str = dataclasses.field(repr=False)
  start: int
  body_start: int
  body: str
  end: int
  indent: str
  fence: str
  info: str
  closed: bool
  later_closings: tuple[int, ...] = ()

  @property
  def tag(self) -> str:
    """The language the block names: the info string's first word up to whitespace, ``:`` or ``{``, lowercased
    ('' when untagged)."""
    words = [w for w in re.split(r"[\s:{]+", self.info) if w]
    return words[0].lower() if words else ""


def fenced_blocks(text: str) -> list[Block]:
  """The fenced blocks of `text`: the complete ones in order, then the one left open at its end, if any.

  A fence is three or more backticks or tildes, closed by a line of at least as many of the same (CommonMark),
  or by such a fence at the end of a line of the block's code (``return x`` then the fence) outside a string
  literal and a comment (there it may be prose: ``# see`` then the fence), where the block ends after that code.
  An opening fence that nothing closes opens no block, but the first after the last complete block is the block
  left open (the completion was cut off in it). Once one is left open though fences at line ends follow it (in
  its string literals), they no longer close blocks of its character.

  Args:
    text: the completion.

  Returns:
    The blocks.
  """
  starts = [0, *(m.end() for m in re.finditer("\n", text))]
  lines = text.split("\n")
  closings = [_CLOSING.fullmatch(line) for line in lines]
  endings = [None if closing else _fence_at_end(line) for line, closing in zip(lines, closings, strict=True)]
  # For each fence character, the longest fence at or after each line: of a closing line, and of any fence line.
  closing_runs = {c: [len(m["run"]) if m and m["char"] == c else 0 for m in closings] for c in "`~"}
  ending_runs = {c: [e[1] if e and e[0] == c else 0 for e in endings] for c in "`~"}
  longest_closing = {c: _longest_from(runs) for c, runs in closing_runs.items()}
  longest_fence = {c: _longest_from(map(max, runs, ending_runs[c])) for c, runs in closing_runs.items()}
  spent = set()  # the characters of fences left open

  def close(i: int, char: str, length: int) -> tuple[int, str] | None:
    """The line that closes the fence opened on line `i` and what of that line the body keeps, if any does."""
    if longest_closing[char][i + 1] < length and (char in spent or longest_fence[char][i + 1] < length):
      return None
    quote = ""  # of the string literal open at the start of a line
    for j in range(i + 1, len(lines)):
      if closing_runs[char][j] >= length:
        return j, ""
      ending = endings[j]
      if char not in spent and ending_runs[char][j] >= length and not _open_at_end(lines[j][: ending[2]], quote):
        return j, lines[j][: ending[2]] + "\n"
      quote = _open_at_end(lines[j], quote)
      quote = quote if len(quote) == 3 else ""  # a one-quote string ends with its line, as a comment does
    spent.add(char)
    return None

  found, left_open = [], None  # each block with the lines it starts and ends on
  i = 0
  while i < len(lines):
    for opening in filter(None, (pattern.match(text, starts[i]) for pattern in _OPENINGS)):
      fence, body_start = opening["fence"], opening.end()
      block = functools.partial(
        Block, text, starts[i], body_start, indent=opening["indent"], fence=fence, info=opening["info"]
      )
      closed = close(i, fence[0], len(fence))
      if closed is not None:
        j, last_line = closed
        found.append((i, j, block(text[body_start : starts[j]] + last_line, starts[j] + len(lines[j]), closed=True)))
        left_open, i = None, j
        break
      left_open = left_open or (i, len(lines) - 1, block(text[body_start:], len(text), closed=False))
    i += 1
  found += [left_open] if left_open else []
  # Each block's later closing fences are looked up among the closing lines up to the block that bounds them, so
  # no line is looked at more than three times.
  closing_lines = {c: [j for j, run in enumerate(runs) if run] for c, runs in closing_runs.items()}
  blocks = []
  for k, (_, last, block) in enumerate(found):
    stop = found[k + _READ_ON][0] if k + _READ_ON < len(found) else len(lines)
    char, length = block.fence[0], len(block.fence)
    ours = closing_lines[char]
    after = ours[bisect.bisect_right(ours, last) : bisect.bisect_right(ours, stop)]
    later = [starts[j] for j in after if closing_runs[char][j] >= length][:_READ_ON]
    blocks.append(dataclasses.replace(block, later_closings=tuple(later)))
  return blocks


def _longest_from(runs: Iterable[int]) -> list[int]:
  """For each line, the longest of `runs` from that line on; 0 past the last line."""
  return list(itertools.accumulate(reversed(list(runs)), max, initial=0))[::-1]


def _fence_at_end(line: str) -> tuple[str, int, int] | None:
  """For a line of code that ends in a fence: its character, its length and where the code before it ends."""
  code = line.rstrip()
  char = code[-1:]
  if char not in ("`", "~"):
    return None
  run = len(code) - len(code.rstrip(char))
  code = code[:-run].rstrip()
  return (char, run, len(code)) if run >= 3 and code else None


def _open_at_end(line: str, quote: str) -> str:
  """What is open at the end of `line`, given the string literal open at its start: a string literal (its
  quote), a comment ('#') or neither ('').

  String prefixes need no reading: a raw string ends at an escaped quote no more than another does.
  """
  pos = 0
  while quote != "#":  # a comment runs to the end of the line
    if quote:
      end = _STRING_END[quote].match(line, pos)
      if end is None:
        return quote
      quote, pos = "", end.end()
    else:
      start = _STRING_START.search(line, pos)
      if start is None:
        return ""
      quote, pos = start.group(), start.end()
  return quote
