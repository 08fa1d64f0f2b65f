"""Sample records: one sampled completion with its provenance, and its byte format.

A `SampleRecord` is what the sampler writes and what the SFT pipeline and the evals read.
It keeps both kinds of per-token log-probability, each named for what it is:

  * `logprob_raw`: log p(token) under the model at temperature 1, untruncated;
  * `logprob_sampled`: log q(token) under the tempered, truncated distribution the token
    was actually drawn from.

Mixing the two silently biases importance weights and KL estimates, so neither is called
plain "logprob". A record serialises to one UTF-8 JSON object carrying `schema_version`;
floats round-trip exactly (JSON keeps Python's shortest repr).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA_VERSION = 1

_ROLES = ("system", "user", "assistant", "tool")


def utc_timestamp() -> str:
  """The current time as an ISO-8601 UTC string (the `created_at` format)."""
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class SampleRecord:
  """One completion sampled from a model for one prompt.

  Exactly one of `prompt_messages` (chat form, rendered with the tokenizer's chat
  template) and `prompt_text` (already-rendered text) is set. Sequences are stored as
  tuples so the record is immutable.

  Attributes:
    task_id: identifier of the prompt / problem.
    sample_index: which of the samples for this task (0-based); `(task_id,
      sample_index)` is the record's key.
    prompt_ids: the token ids the model was conditioned on.
    completion_text: the decoded completion, without the stop token.
    completion_ids: the sampled token ids, [num_completion_tokens].
    finish_reason: why decoding ended: 'stop' (a stop token), 'length'
      (max_new_tokens reached), or another sampler-defined reason.
    logprob_raw: per completion token, log-prob at temperature 1, untruncated.
    logprob_sampled: per completion token, log-prob under the tempered truncated
      distribution the token was drawn from.
    temperature, top_k, top_p, min_p, max_new_tokens: the decoding parameters.
    seed: the random seed the sample was drawn with.
    source_checkpoint: the checkpoint the model came from (path and/or step).
    prompt_messages: the prompt as chat messages, each {'role', 'content'}.
    prompt_text: the prompt as rendered text.
    created_at: ISO-8601 UTC creation time; defaults to now.
    extra: free-form JSON-serialisable metadata (difficulty, source dataset, ...).
  """

  task_id: str
  sample_index: int
  prompt_ids: Sequence[int]
  completion_text: str
  completion_ids: Sequence[int]
  finish_reason: str
  logprob_raw: Sequence[float]
  logprob_sampled: Sequence[float]
  temperature: float
  top_k: int
  top_p: float
  min_p: float
  max_new_tokens: int
  seed: int
  source_checkpoint: str
  prompt_messages: Sequence[Mapping[str, str]] | None = None
  prompt_text: str | None = None
  created_at: str = dataclasses.field(default_factory=utc_timestamp)
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    set_ = object.__setattr__
    set_(self, "prompt_ids", tuple(int(t) for t in self.prompt_ids))
    set_(self, "completion_ids", tuple(int(t) for t in self.completion_ids))
    set_(self, "logprob_raw", tuple(float(x) for x in self.logprob_raw))
    set_(self, "logprob_sampled", tuple(float(x) for x in self.logprob_sampled))
    if self.prompt_messages is not None:
      set_(self, "prompt_messages", tuple(dict(m) for m in self.prompt_messages))
    set_(self, "extra", dict(self.extra))
    self._validate()

  def _validate(self):
    if not isinstance(self.task_id, str) or not self.task_id:
      raise ValueError(f"SampleRecord.task_id must be a non-empty string, got {self.task_id!r}")
    if int(self.sample_index) != self.sample_index or self.sample_index < 0:
      raise ValueError(f"SampleRecord.sample_index must be an integer >= 0, got {self.sample_index!r}")
    if (self.prompt_messages is None) == (self.prompt_text is None):
      raise ValueError(f"SampleRecord {self.key}: set exactly one of prompt_messages and prompt_text")
    for message in self.prompt_messages or ():
      if set(message) != {"role", "content"} or message["role"] not in _ROLES:
        raise ValueError(
          f"SampleRecord {self.key}: each prompt message needs exactly 'role' (one of "
          f"{_ROLES}) and 'content', got {message!r}"
        )
    n = len(self.completion_ids)
    for name in ("logprob_raw", "logprob_sampled"):
      if len(getattr(self, name)) != n:
        raise ValueError(
          f"SampleRecord {self.key}: {name} has {len(getattr(self, name))} entries but "
          f"completion_ids has {n}; there must be one log-prob per completion token"
        )

  @property
  def key(self) -> tuple[str, int]:
    """The record's identity: (task_id, sample_index)."""
    return (self.task_id, self.sample_index)

  @property
  def cut_at_max_new_tokens(self) -> bool:
    """Decoding stopped at max_new_tokens, before any end token: the completion is unfinished."""
    return self.finish_reason == "length"

  def to_bytes(self) -> bytes:
    """Serialises to UTF-8 JSON with a `schema_version` field."""
    payload = dataclasses.asdict(self)
    payload["schema_version"] = SCHEMA_VERSION
    return json.dumps(payload, ensure_ascii=False, allow_nan=True).encode("utf-8")

  @classmethod
  def from_bytes(cls, data: bytes) -> SampleRecord:
    """Parses bytes written by `to_bytes`.

    Raises:
      ValueError: the bytes are not a record, or carry an unknown schema version or
        unknown fields.
    """
    try:
      payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f"not a serialised SampleRecord: {e}") from e
    if not isinstance(payload, dict):
      raise ValueError(f"not a serialised SampleRecord: top level is {type(payload).__name__}")
    version = payload.pop("schema_version", None)
    if version != SCHEMA_VERSION:
      raise ValueError(
        f"SampleRecord schema_version {version!r} is not supported (this code reads version {SCHEMA_VERSION})"
      )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
      raise ValueError(f"serialised SampleRecord has unknown fields {unknown}")
    return cls(**payload)
