"""Fixed-shape arrays for a teacher-student step: two prompts, one shared response.

Each row holds the student sequence `[left-padded prompt | response | right padding]` and the teacher
sequence `[left-padded teacher prompt | the same response | right padding]`. Prompts are left-padded to
fixed widths `Ps` and `Pt`, so the response starts at the same column in every row, and the hidden
state that predicts response token t is at column `Ps - 1 + t` (student) and `Pt - 1 + t` (teacher):
static slices, no gathers. Padding has segment id 0; real tokens have segment id 1 and positions
counting from 0 at the first prompt token, so a left-padded row computes what the unpadded one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

STUDENT_KEYS = ("student_tokens", "student_positions", "student_segment_ids")
TEACHER_KEYS = ("teacher_tokens", "teacher_positions", "teacher_segment_ids")
RESPONSE_KEYS = ("response_tokens", "response_mask", "behaviour_logprob")
BATCH_KEYS = STUDENT_KEYS + TEACHER_KEYS + RESPONSE_KEYS


def _left_padded(
  prompt: Sequence[int], response: Sequence[int], prompt_width: int, response_width: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(tokens, positions, segment_ids), each int32 [prompt_width + response_width]."""
  width = prompt_width + response_width
  tokens = np.full(width, pad_id, np.int32)
  segments = np.zeros(width, np.int32)
  start = prompt_width - len(prompt)
  real = np.concatenate([np.asarray(prompt, np.int32), np.asarray(response, np.int32)])
  tokens[start : start + len(real)] = real
  segments[start : start + len(real)] = 1
  positions = np.maximum(np.cumsum(segments) - 1, 0).astype(np.int32)
  return tokens, positions, segments


def pack_distill_batch(
  student_prompts: Sequence[Sequence[int]],
  teacher_prompts: Sequence[Sequence[int]],
  responses: Sequence[Sequence[int]],
  *,
  prompt_width: int,
  teacher_prompt_width: int,
  response_width: int,
  behaviour_logprobs: Sequence[Sequence[float]] | None = None,
  row_weights: Sequence[float] | None = None,
  pad_id: int = 0,
) -> dict[str, np.ndarray]:
  """Packs B rollouts into the arrays of `BATCH_KEYS`.

  Args:
    student_prompts: B lists of prompt ids (non-empty).
    teacher_prompts: B lists of teacher prompt ids (non-empty).
    responses: B lists of the student's response ids; the teacher scores the same ids.
    prompt_width: Ps, >= every student prompt length.
    teacher_prompt_width: Pt, >= every teacher prompt length.
    response_width: R, >= every response length.
    behaviour_logprobs: B lists aligned with `responses`: each token's log-prob under the parameters that
      sampled it at the loss temperature, untruncated (zeros when None; the on-policy learner fills them
      on device with `distill_step.make_behaviour_logprobs`).
    row_weights: B weights multiplied into the mask (0 drops a row, e.g. one without a teacher context).
    pad_id: the id written at padding (never attended to, never scored).

  Returns:
    student_* int32 [B, Ps + R]; teacher_* int32 [B, Pt + R]; response_tokens int32 [B, R];
    response_mask float32 [B, R] (row weight on real response tokens); behaviour_logprob float32 [B, R].
  """
  batch = len(responses)
  if not (len(student_prompts) == len(teacher_prompts) == batch):
    raise ValueError(
      f"got {len(student_prompts)} student prompts, {len(teacher_prompts)} teacher prompts "
      f"and {batch} responses; they must be equal"
    )
  if behaviour_logprobs is not None and len(behaviour_logprobs) != batch:
    raise ValueError(f"behaviour_logprobs has {len(behaviour_logprobs)} rows, expected {batch}")
  if row_weights is not None and len(row_weights) != batch:
    raise ValueError(f"row_weights has {len(row_weights)} entries, expected {batch}")
  for name, rows, width in (
    ("student prompt", student_prompts, prompt_width),
    ("teacher prompt", teacher_prompts, teacher_prompt_width),
    ("response", responses, response_width),
  ):
    lengths = [len(r) for r in rows]
    if name != "response" and min(lengths, default=1) < 1:
      raise ValueError(f"every {name} needs at least one token")
    if max(lengths, default=0) > width:
      raise ValueError(f"a {name} has {max(lengths)} tokens, more than its width {width}")
  out = {key: [] for key in BATCH_KEYS}
  for row in range(batch):
    response = list(responses[row])
    for keys, prompt, width in (
      (STUDENT_KEYS, student_prompts[row], prompt_width),
      (TEACHER_KEYS, teacher_prompts[row], teacher_prompt_width),
    ):
      for key, array in zip(keys, _left_padded(prompt, response, width, response_width, pad_id)):
        out[key].append(array)
    tokens = np.full(response_width, pad_id, np.int32)
    tokens[: len(response)] = response
    weight = 1.0 if row_weights is None else float(row_weights[row])
    mask = np.zeros(response_width, np.float32)
    mask[: len(response)] = weight
    logprob = np.zeros(response_width, np.float32)
    if behaviour_logprobs is not None:
      if len(behaviour_logprobs[row]) != len(response):
        raise ValueError(
          f"row {row}: {len(behaviour_logprobs[row])} behaviour log-probs for {len(response)} response tokens"
        )
      logprob[: len(response)] = behaviour_logprobs[row]
    out["response_tokens"].append(tokens)
    out["response_mask"].append(mask)
    out["behaviour_logprob"].append(logprob)
  return {key: np.stack(rows) for key, rows in out.items()}


def response_block(hidden: jax.Array, response_width: int) -> jax.Array:
  """The hidden states that predict the response tokens.

  Args:
    hidden: [batch, P + R, embed] final hidden states of a packed sequence.
    response_width: R.

  Returns:
    [batch, R, embed]: column t predicts response token t (it sits at P - 1 + t).
  """
  start = hidden.shape[1] - response_width - 1
  if start < 0:
    raise ValueError(f"sequence of {hidden.shape[1]} columns has no prompt before a {response_width}-token response")
  return hidden[:, start : start + response_width]


def process_rows(batch: dict[str, np.ndarray], process_index: int, process_count: int) -> dict[str, np.ndarray]:
  """This process's contiguous block of rows of a batch every process built in full.

  Args:
    batch: arrays with a leading batch axis divisible by `process_count`.
    process_index: this process, in [0, process_count).
    process_count: number of processes.
  """
  rows = next(iter(batch.values())).shape[0]
  if rows % process_count:
    raise ValueError(f"batch of {rows} rows does not split evenly over {process_count} processes")
  size = rows // process_count
  return {key: value[process_index * size : (process_index + 1) * size] for key, value in batch.items()}
