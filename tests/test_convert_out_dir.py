"""`python -m ssd_jax.convert` refuses an --out whose replacement would lose data, before any work.

--in names no model here: a refusal of --out must come first, so no test converts anything.
"""

import os

import pytest

from ssd_jax import convert


def _refusal(capsys, out: str) -> str:
  with pytest.raises(SystemExit) as exit_info:
    convert.main(["gguf", "--in=not-a-model", f"--out={out}"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2 and "\n" not in err
  assert "not-a-model" not in err  # Refused before --in is even read.
  return err


def _earlier_conversion(directory):
  directory.mkdir()
  for name in convert.CONVERTED_FILES:
    (directory / name).write_text("{}")
  return directory


def test_a_file_is_refused(tmp_path, capsys):
  target = tmp_path / "notes.txt"
  target.write_text("keep me")
  assert _refusal(capsys, str(target)) == f"error: --out='{target}' is a file; pass the path of a new directory"
  assert target.read_text() == "keep me" and not os.path.exists(f"{target}.partial")


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_the_current_directory_or_one_above_it_is_refused(tmp_path, monkeypatch, capsys, out):
  (tmp_path / "sub").mkdir()
  (tmp_path / "run.log").write_text("keep me")
  monkeypatch.chdir(tmp_path)
  err = _refusal(capsys, out)
  assert err.startswith(f"error: --out='{out}' is the current directory or one above it") and "--out=model" in err
  assert (tmp_path / "run.log").read_text() == "keep me"


@pytest.mark.parametrize(
  "contents",
  [
    {"results.json": "{}"},  # A run directory.
    {**dict.fromkeys(convert.CONVERTED_FILES, "{}"), "notes.txt": "mine"},  # A conversion plus the user's file.
  ],
)
def test_a_directory_that_is_no_earlier_conversion_is_refused(tmp_path, capsys, contents):
  out = tmp_path / "run"
  out.mkdir()
  for name, text in contents.items():
    (out / name).write_text(text)
  err = _refusal(capsys, str(out))
  assert f"--out='{out}' is a non-empty directory that is no earlier conversion" in err
  assert err.endswith("pass another path, or remove it first")
  assert {p.name: p.read_text() for p in out.iterdir()} == contents


def test_a_partial_directory_holding_other_files_is_refused(tmp_path, capsys):
  (tmp_path / "model.partial").mkdir()
  (tmp_path / "model.partial" / "notes.txt").write_text("keep me")
  err = _refusal(capsys, str(tmp_path / "model"))
  assert f"{tmp_path / 'model'}.partial, where --out=" in err and "holds what no conversion writes" in err
  assert (tmp_path / "model.partial" / "notes.txt").read_text() == "keep me"


def test_new_empty_and_earlier_conversions_pass_the_check(tmp_path):
  (tmp_path / "empty").mkdir()
  conversion = _earlier_conversion(tmp_path / "conversion")
  # A killed conversion's leftovers are removed before the next one writes.
  (tmp_path / "conversion.partial").mkdir()
  (tmp_path / "conversion.partial" / "tokenizer.json").write_text("{}")
  for out in (tmp_path / "new" / "model", tmp_path / "empty", conversion):
    assert convert.check_out_dir(str(out)) == str(out)
  link = tmp_path / "link"
  link.symlink_to(conversion)
  assert convert.check_out_dir(str(link)) == str(conversion)  # Its target is replaced, not the link.
