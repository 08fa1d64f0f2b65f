"""On-policy self-distillation as a library: teacher contexts, rollouts, the learner, held-out evaluation."""
