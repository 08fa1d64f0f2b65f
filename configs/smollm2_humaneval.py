"""SSD on a real pretrained model on CPU: SmolLM2-135M-Instruct (converted from its GGUF) on HumanEval.

synthesize (several samples per HumanEval prompt at the paper's Llama-3.1-8B truncation, T_train 0.8 /
top-k 20 / top-p 0.8) -> sft (plain cross-entropy on those samples, the paper's optimizer at a small
model's learning rate) -> eval (base and SSD, n = 10 samples per problem over a small T_eval grid, chosen on the
dev half of the evaluation problems and reported on the test half) -> report.

    python -m ssd_jax.convert gguf --in=smollm2 --out=runs/smollm2/base_hf
    python -m ssd_jax.main --config=configs/smollm2_humaneval.py --workdir=runs/smollm2_humaneval

Split: HumanEval is cut in two halves of 82 by a seeded split of task ids (`problems.half`): synthesis samples
half 'a'; evaluation takes the first 24 problems of half 'b', which the protocol splits again into dev
(decoding chosen) and test (numbers reported). No evaluation problem is ever a synthesis prompt. The whole run
took 70 minutes on a 2-core CPU (README has its table).
"""

from ssd_jax.config import base_config

# Where `python -m ssd_jax.convert gguf --in=smollm2` is told to write the model.
BASE_HF_DIR = "runs/smollm2/base_hf"


def get_config():
  c = base_config()
  c.stages = "synthesize,sft,eval,report"
  c.model.hf_dir = BASE_HF_DIR
  c.model.preset = ""  # The directory's config.json gives the shape.
  c.model.dtype = "float32"
  c.model.param_dtype = "float32"
  c.model.scan_layers = True  # 30 blocks compile as one.
  c.prompting.system_prompt = ""  # The chat template's own system turn.

  # The paper's Llama-3.1-8B synthesis decoding, 2 samples per prompt, short code completions (the model's
  # HumanEval answers end after 70-210 tokens; longer ones ramble). Batch 16 is this engine's fastest on 2 cores.
  c.sampling.update(dict(temperature=0.8, top_k=20, top_p=0.8, n=2, max_new_tokens=192, batch_size=16))
  c.synthesize.problems.update(dict(source="humaneval", split="", num_problems=0, half="a"))
  c.synthesize.prompts_per_chunk = 32
  c.synthesize.records_per_shard = 256

  # The paper's AdamW (0.9, 0.95, wd 0.1, cosine with warm-up), at a learning rate a 135M model moves with in
  # few steps: 16 steps of 2 packed rows of 1,024 tokens, about one pass over the 164 samples.
  c.sft.update(
    dict(
      steps=16,
      warmup_steps=2,
      learning_rate=5e-5,
      end_learning_rate=5e-6,
      global_batch_size=2,
      seq_len=1024,
      checkpoint_every=8,
      log_every=4,
    )
  )

  c.eval_sampling.update(dict(temperature=0.7, top_k=20, top_p=0.8, n=10, max_new_tokens=192, batch_size=16))
  # 24 problems of half 'b' (12 dev, 12 test): what n = 10 over a 2-setting grid for 2 models costs in ~20 minutes.
  c.eval.problems.update(dict(source="humaneval", split="", num_problems=24, half="b"))
  c.eval.models = "base,ssd"
  c.eval.ks = "1,5,10"
  c.eval.workers = 2
  # The evaluation protocol: settings chosen on a seeded dev half of the eval problems, reported on the test half.
  c.eval.grid.temperatures = "0.2,0.7"
  c.eval.grid.truncations = "20/0.8"
  c.eval.split.dev_fraction = 0.5
  return c
