"""The SSD sections: `prompting`, `pretrain` (built-in task only), `synthesize`, `sft` and `eval`.

Defaults are the SSD paper's where it has one (SFT: AdamW (0.9, 0.95), weight decay 0.1, cosine 5e-6 -> 1e-6,
batch 32 rows of 65,536 tokens, 2,500 steps; the paper rows train them unpacked, one sample per row).
"""

from __future__ import annotations

import math

import ml_collections

from ssd_jax.config.schema import Check, comma_list, int_list_ok
from ssd_jax.config.training import training_checks, training_section
from ssd_jax.data.chat import DEFAULT_SYSTEM_PROMPT, PROMPT_STYLES
from ssd_jax.evals.isolation import UID_BLOCK_SIZE
from ssd_jax.evals.protocol import parse_grid
from ssd_jax.evals.sandbox import MAX_MEMORY_MB, MAX_TIMEOUT_S

PROBLEM_SOURCES = ("builtin", "jsonl", "humaneval", "tfds")
EVAL_MODELS = ("base", "ssd", "sdsd", "sdpo", "sdpo_blank")  # sdpo_blank: self_distill.BLANK_FEEDBACK_ABLATIONS.


def problems_section(split: str, num_problems: int = 0) -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.source = "builtin"  # One of PROBLEM_SOURCES.
  p.path = ""  # JSONL / LiveCodeBench file, TFDS dataset directory, or HumanEval file ("" = the package's).
  p.split = split  # Built-in task split, or TFDS split.
  p.num_problems = num_problems  # The first N problems; 0 means all (the built-in task needs N > 0).
  p.dedup = True  # Drop problems whose statement repeats an earlier one.
  # '' keeps every problem; 'a' or 'b' keeps one half of a seeded split by problem id (seed `half_seed`), so that
  # synthesis and evaluation can draw from disjoint halves of one problem set.
  p.half = ""
  p.half_seed = 0
  # Which problems the built-in task draws; -1: the run's `seed` (the evaluation's are fixed, so replicate runs
  # with other seeds train on other problems and are tested on the same ones).
  p.seed = -1
  return p


def problems_checks(prefix: str) -> list[Check]:
  return [
    Check(f"{prefix}.source", lambda v: v in PROBLEM_SOURCES, f"one of {PROBLEM_SOURCES}"),
    Check(f"{prefix}.num_problems", lambda v: v >= 0, "a count >= 0 (0 means all)"),
    Check(f"{prefix}.half", lambda v: v in ("", "a", "b"), "'' (all problems), 'a' or 'b' (one half)"),
    Check(f"{prefix}.seed", lambda v: v >= -1, "a seed >= 0, or -1 for the run's seed"),
  ]


def problems_errors(section: ml_collections.ConfigDict, prefix: str) -> list[str]:
  """What a run that reads `section`'s problems needs (checked only when such a stage runs)."""
  if section.source == "builtin" and section.num_problems < 1:
    return [f"field '{prefix}.num_problems' must be >= 1 for the built-in task"]
  if section.source in ("jsonl", "tfds") and not section.path:
    return [f"field '{prefix}.path' is empty but source is {section.source!r}"]
  if prefix == "eval.problems" and section.source == "builtin" and section.split == "pretrain":
    return [
      "field 'eval.problems.split' = 'pretrain': the pretrain stage trains the task's base model on that split's "
      "problems with their answers, so scores on it measure recall; evaluate on split 'eval'"
    ]
  return []


def add_sections(c: ml_collections.ConfigDict) -> None:
  c.prompting = ml_collections.ConfigDict()
  c.prompting.system_prompt = DEFAULT_SYSTEM_PROMPT  # "" leaves the system turn to the chat template.
  c.prompting.include_public_tests = False
  # One of PROMPT_STYLES: 'project' (this project's wording) or 'lcb_release' (the SSD authors' released
  # LiveCodeBench prompt: one user turn, the question without its title; needs system_prompt '' and no examples).
  c.prompting.style = "project"

  c.pretrain = training_section(
    steps=300,
    warmup_steps=30,
    learning_rate=3e-3,
    end_learning_rate=3e-4,
    global_batch_size=16,
    seq_len=256,
    checkpoint_every=100,
  )
  c.pretrain.num_examples = 4000  # Built-in task pre-training problems (one answer each).
  # Share of wrong answers in the whole corpus; the teacher-layout examples (context_share) are correct ones,
  # so the plain examples hold corruption_rate / (1 - context_share) of them.
  c.pretrain.corruption_rate = 0.1
  c.pretrain.lock_slip_rate = 0.0  # Share of correct answers with one slip at a lock (a distractor tail there).
  # Share of examples laid out as the self-distillation teacher sees them (the question with a correct
  # demonstration and/or sandbox feedback on a wrong attempt, then a correct answer).
  c.pretrain.context_share = 0.0
  c.pretrain.tokenizer_vocab_size = 512

  c.synthesize = ml_collections.ConfigDict()
  c.synthesize.problems = problems_section("synth")
  c.synthesize.prompts_per_chunk = 256  # Prompts sampled between record writes: the unit of resumption.
  c.synthesize.records_per_shard = 1024

  c.sft = training_section(
    steps=2500,
    warmup_steps=250,
    learning_rate=5e-6,
    end_learning_rate=1e-6,
    global_batch_size=32,
    seq_len=65536,
    checkpoint_every=250,
  )
  c.sft.drop_degenerate = True  # Drop empty outputs and one-line stubs, nothing else.
  c.sft.pack = True  # False: one sample per row, padded to seq_len (the paper rows' SFT).

  c.eval = ml_collections.ConfigDict()
  c.eval.problems = problems_section("eval")
  c.eval.problems.seed = 0
  c.eval.models = "base,ssd"  # Comma-separated, from EVAL_MODELS.
  c.eval.ks = "1,4,8,16"  # pass@k for these k (those above eval_sampling.n are dropped).
  c.eval.timeout_s = 10.0  # Wall-clock limit per test.
  c.eval.memory_mb = 1024
  c.eval.workers = 0  # Parallel sandbox executions; 0 means one per CPU (at most 64).
  c.eval.allow_weak_sandbox = False  # Grade even if a sandbox isolation layer is missing (reports say so).
  c.eval.bootstrap = 1000  # Bootstrap replicates for the confidence intervals.
  # The decoding grid every model is evaluated over on the dev split (the SSD paper's rule: a method must beat
  # the base at the base's own best decoding). Empty fields fall back to eval_sampling's.
  c.eval.grid = ml_collections.ConfigDict()
  c.eval.grid.temperatures = ""  # Comma-separated T_eval, e.g. '0.3,0.7,1.1'; '' = eval_sampling's (unless named).
  c.eval.grid.truncations = ""  # Comma-separated 'top_k/top_p', e.g. '20/0.8,0/1.0'; '' = eval_sampling's.
  c.eval.grid.named = ""  # Comma-separated 'name=T/top_k/top_p', e.g. a model card's 'official=0.7/20/0.8'.
  c.eval.checkpoints = ""  # Intermediate training checkpoints to evaluate too: '' none, 'all', or steps '20,40'.
  c.eval.split = ml_collections.ConfigDict()
  c.eval.split.dev_fraction = 0.5  # Share of the problems (per difficulty) that chooses settings and checkpoints.
  # Seed of the dev/test split. Apart from `seed`, so that replicate runs (other seeds) are tested on the same
  # held-out problems and never tune on another run's test problems.
  c.eval.split.seed = 0
  c.eval.select_k = 1  # Candidates are chosen by dev pass@select_k.
  # pass@n is also compared with every model at its own dev-best candidate for pass@n (usually hotter than the
  # pass@1 choice): one more test run per model whose pass@n choice differs. Without it, pass@n is only shown at
  # the pass@select_k choice, which measures the choice of temperature as much as the training.
  c.eval.tune_pass_at_n = True
  c.eval.diversity_m = 2  # Correct-solution diversity is measured among this many correct samples per problem.
  c.eval.probe = True  # Run correct samples on probe inputs for behaviour clusters.


def checks() -> list[Check]:
  return [
    *training_checks("pretrain"),
    Check("prompting.style", lambda v: v in PROMPT_STYLES, f"one of {PROMPT_STYLES}"),
    Check("pretrain.num_examples", lambda v: v >= 1, "at least 1 example"),
    Check("pretrain.corruption_rate", lambda v: 0 <= v <= 1, "a rate in [0, 1]"),
    Check("pretrain.lock_slip_rate", lambda v: 0 <= v <= 1, "a rate in [0, 1]"),
    Check("pretrain.context_share", lambda v: 0 <= v <= 1, "a share in [0, 1]"),
    Check("pretrain.tokenizer_vocab_size", lambda v: v >= 259, "a vocabulary >= 259 (3 special + 256 bytes)"),
    *problems_checks("synthesize.problems"),
    Check("synthesize.prompts_per_chunk", lambda v: v >= 1, "at least 1 prompt per chunk"),
    Check("synthesize.records_per_shard", lambda v: v >= 1, "at least 1 record per shard"),
    *training_checks("sft"),
    *problems_checks("eval.problems"),
    Check(
      "eval.models",
      lambda v: bool(comma_list(v)) and all(m in EVAL_MODELS for m in comma_list(v)),
      f"comma-separated models from {EVAL_MODELS}",
    ),
    Check("eval.ks", int_list_ok, "comma-separated integers >= 1, e.g. '1,4,8'"),
    Check("eval.timeout_s", lambda v: 0 < v <= MAX_TIMEOUT_S, f"finite seconds in (0, {MAX_TIMEOUT_S}] (a day)"),
    Check("eval.memory_mb", lambda v: 1 <= v <= MAX_MEMORY_MB, f"megabytes in [1, {MAX_MEMORY_MB}]"),
    Check(
      "eval.workers",
      lambda v: 0 <= v <= UID_BLOCK_SIZE,
      f"a worker count in [0, {UID_BLOCK_SIZE}] (0 means one per CPU, at most {UID_BLOCK_SIZE})",
    ),
    Check("eval.bootstrap", lambda v: v >= 1, "at least 1 bootstrap replicate"),
    Check("eval.checkpoints", lambda v: v.strip() in ("", "all") or int_list_ok(v), "'', 'all' or steps like '20,40'"),
    Check("eval.split.dev_fraction", lambda v: 0 < v < 1, "a share in (0, 1)"),
    Check("eval.split.seed", lambda v: v >= 0, "a seed >= 0 (apart from `seed`)"),
    Check("eval.select_k", lambda v: v >= 1, "a k >= 1"),
    Check("eval.diversity_m", lambda v: v >= 2, "at least 2 correct samples (one is always one cluster)"),
  ]


def cross_errors(config: ml_collections.ConfigDict) -> list[str]:
  """The decoding grid must parse with finite temperatures, the selection and diversity counts must fit
  eval_sampling.n, and prompt style 'lcb_release' is the released prompt alone."""
  errors = _prompting_errors(config.prompting)
  try:
    settings = decoding_grid(config).settings()
  except ValueError as e:
    errors.append(str(e))
  else:
    infinite = sorted({"named" if s.name else "temperatures" for s in settings if not math.isfinite(s.temperature)})
    errors += [
      f"field 'eval.grid.{key}' = {config.eval.grid[key]!r} holds a temperature that is not finite" for key in infinite
    ]
  for field in ("select_k", "diversity_m"):
    if config.eval[field] > config.eval_sampling.n:
      errors.append(f"field 'eval.{field}' = {config.eval[field]} exceeds 'eval_sampling.n' = {config.eval_sampling.n}")
  return errors


def _prompting_errors(prompting: ml_collections.ConfigDict) -> list[str]:
  """The released prompt has no system turn and shows no examples: style 'lcb_release' takes neither."""
  if prompting.style != "lcb_release":
    return []
  errors = []
  if prompting.system_prompt:
    errors.append(
      "field 'prompting.system_prompt' must be '' with field 'prompting.style' = 'lcb_release' (the released "
      "prompt has no system turn)"
    )
  if prompting.include_public_tests:
    errors.append(
      "field 'prompting.include_public_tests' must be False with field 'prompting.style' = 'lcb_release' "
      "(the released prompt shows no examples)"
    )
  return errors


def decoding_grid(config: ml_collections.ConfigDict):
  """The `evals.protocol.DecodingGrid` of `eval.grid`, with eval_sampling's decoding filling empty fields."""
  grid, sampling = config.eval.grid, config.eval_sampling
  return parse_grid(
    grid.temperatures or (str(sampling.temperature) if not grid.named else ""),
    grid.truncations,
    grid.named,
    default_truncation=(max(int(sampling.top_k), 0), float(sampling.top_p)),  # top_k <= 0 is off, as 0 is.
  )


def tunes_pass_at_n(config: ml_collections.ConfigDict) -> bool:
  """Whether each model also gets a candidate chosen by dev pass@n (`eval.tune_pass_at_n`), which is a second
  choice only when the selection metric is not pass@n already."""
  return bool(config.eval.tune_pass_at_n) and config.eval.select_k != config.eval_sampling.n


def eval_model_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return comma_list(config.eval.models)


def evaluated_training_stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The training stages whose models `eval.models` evaluates: 'sft' for ssd, 'self_distill' for any method."""
  models = set(eval_model_names(config))
  return tuple(s for s, used in (("sft", "ssd" in models), ("self_distill", bool(models - {"base", "ssd"}))) if used)


def eval_ks(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  return tuple(int(k) for k in comma_list(config.eval.ks))
