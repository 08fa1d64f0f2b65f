"""Small synthetic, verifiable programming tasks for the CPU default run and controlled experiments.

`builtin_problems` draws problems of one split, `solutions_for` lists a problem's known correct
answers (the forks), `pretrain_corpus` gives the imperfect pre-training data, and
`build_task_tokenizer` writes the tiny model's tokenizer directory.
"""

from ssd_jax.tasks.builtin import builtin_problems, pretrain_corpus, render_answer, solutions_for, wrong_solutions_for
from ssd_jax.tasks.tokenizer_assets import build_task_tokenizer

__all__ = [
  "build_task_tokenizer",
  "builtin_problems",
  "pretrain_corpus",
  "render_answer",
  "solutions_for",
  "wrong_solutions_for",
]
