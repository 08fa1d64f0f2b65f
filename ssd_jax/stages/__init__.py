"""One thin module per name in `config.stages`, each with `run(ctx: pipeline.RunContext)`.

  forward       one sharded forward pass of the configured model (a smoke test)
  pretrain      the built-in task's base model, trained from scratch -> models/base
  synthesize    samples from the frozen base at T_train -> synthesize/records
  sft           plain cross-entropy on those samples -> models/ssd
  self_distill  on-policy SDSD / SDPO from the base -> models/sdsd, models/sdpo
  eval          every model over the decoding grid on dev, its best candidate on test -> eval/<model>/
  report        each model at its best against the base at its own, on test -> report/
  plan          will it fit on its TPU slice: AOT compiles with libtpu -> plan.json

A stage reads what earlier ones wrote under the workdir, so each can be rerun on its own.
"""
