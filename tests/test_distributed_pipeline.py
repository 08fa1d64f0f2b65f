"""The whole pipeline as 2 local processes (gloo, 4 CPU devices each), killed in the middle of SFT and resumed:
it ends bit-identical to an uninterrupted 2-process run, with records and reports written once."""

import json
import os
import pathlib
import signal
import sys
import time

import multiprocess_fixtures as mp
import pytest
from array_record.python.array_record_module import ArrayRecordReader

CONFIG = pathlib.Path(__file__).resolve().parent / "two_process_pipeline_config.py"
TIMEOUT_S = 3000
# `python -m ssd_jax.main`, but with the module imported under its own name: the config file imports test
# fixtures that import ssd_jax.main, which must not define the flags a second time.
MAIN = "from absl import app; from ssd_jax import main; app.run(main.main)"


def _commands(workdir: pathlib.Path, port: int) -> list[list[str]]:
  return [
    [sys.executable, "-c", MAIN, f"--config={CONFIG}", f"--workdir={workdir}"]
    + [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
    for i in range(2)
  ]


def _env() -> dict[str, str]:
  env = mp.process_env(devices_each=4)
  env["PYTHONPATH"] = os.pathsep.join([str(mp.REPO / "tests"), env["PYTHONPATH"]])
  return env


def _run(workdir: pathlib.Path) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  logs = [workdir / f"process_{i}.log" for i in range(2)]
  mp.wait(mp.start(_commands(workdir, mp.free_port()), logs, _env()), logs, TIMEOUT_S)


def _kill_mid_sft(workdir: pathlib.Path) -> None:
  """Starts the run and SIGKILLs both processes once SFT has saved a checkpoint and not yet finished."""
  workdir.mkdir(parents=True, exist_ok=True)
  logs = [workdir / f"process_{i}.log" for i in range(2)]
  procs = mp.start(_commands(workdir, mp.free_port()), logs, _env())
  checkpoints, done = workdir / "sft" / "checkpoints", workdir / "stages" / "sft.done.json"
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while time.monotonic() < deadline:
      saved = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
      if saved or any(p.poll() is not None for p in procs):
        break
      time.sleep(0.1)
    assert saved and not done.exists(), "SFT was not caught in the middle"
    for p in procs:
      p.send_signal(signal.SIGKILL)
  finally:
    mp.stop(procs)


def _files(workdir: pathlib.Path, pattern: str) -> dict[str, bytes]:
  """Contents by relative path; records name the run's workdir (their source checkpoint), so it is masked."""
  here = str(workdir).encode()
  return {str(p.relative_to(workdir)): p.read_bytes().replace(here, b"WORKDIR") for p in sorted(workdir.glob(pattern))}


def _records(workdir: pathlib.Path) -> dict[str, list[dict]]:
  """Synthesis records by shard, without what differs between two runs by design (time, workdir path)."""
  shards = {}
  for path in sorted((workdir / "synthesize" / "records").glob("*.array_record")):
    rows = [json.loads(r.decode().replace(str(workdir), "WORKDIR")) for r in ArrayRecordReader(str(path)).read_all()]
    shards[path.name] = [{k: v for k, v in row.items() if k != "created_at"} for row in rows]
  return shards


@pytest.mark.slow
def test_killed_mid_sft_and_resumed_equals_an_uninterrupted_run(tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  _run(straight)
  _kill_mid_sft(resumed)
  _run(resumed)

  for name in ("pretrain", "synthesize", "sft", "self_distill", "eval", "report"):
    assert (resumed / "stages" / f"{name}.done.json").exists(), name
  models = _files(straight, "models/*/model.safetensors")
  assert set(models) == {f"models/{m}/model.safetensors" for m in ("base", "ssd", "sdsd", "sdpo")}
  resumed_models = _files(resumed, "models/*/model.safetensors")
  assert set(resumed_models) == set(models)
  # Bit-identical weights, SDPO's too: its teacher reads the sandbox's feedback on each rollout, which must not
  # depend on timing.
  for name in models:
    assert resumed_models[name] == models[name], name
  records = _records(straight)
  assert records and _records(resumed) == records  # Each shard written once, by one host.
  # Same completions, so the same pass@k (behaviour counts depend on sandbox timing, so they are not compared).
  report = json.loads((straight / "report" / "comparison.json").read_text())["models"]
  again = json.loads((resumed / "report" / "comparison.json").read_text())["models"]
  assert set(report) >= {"base", "ssd"} and set(again) == set(report)
  for model in sorted(report):
    completions = _files(straight, f"eval/{model}/**/completions.jsonl")
    assert completions and _files(resumed, f"eval/{model}/**/completions.jsonl") == completions, model
    assert again[model]["selected"] == report[model]["selected"], model
    assert again[model]["test"]["pass_at_k_curve"] == report[model]["test"]["pass_at_k_curve"], model
