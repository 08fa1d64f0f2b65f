"""A save failure that first surfaces when the checkpointer closes is the same one-line error as elsewhere."""

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from ssd_jax.train.checkpointing import Checkpointer, CheckpointSaveError


@pytest.mark.parametrize("method", ["wait_until_finished", "close"])
def test_a_save_failure_first_seen_at_close_is_one_named_error(tmp_path, monkeypatch, method):
  # Orbax reports a full disk as its own error raised from the OSError, here only when the manager winds down.
  real = getattr(ocp.CheckpointManager, method)

  def failing(self):
    real(self)
    try:
      raise OSError(28, "No space left on device")
    except OSError as e:
      raise ValueError("commit failed") from e

  checkpointer = Checkpointer(tmp_path / "ckpt")
  checkpointer.save(1, {"w": jnp.zeros(4)}, force=True)
  monkeypatch.setattr(ocp.CheckpointManager, method, failing)
  with pytest.raises(CheckpointSaveError, match=f"saving a checkpoint in {tmp_path / 'ckpt'} failed: .*No space left"):
    checkpointer.close()
  monkeypatch.undo()
  checkpointer._manager.close()  # pylint: disable=protected-access  # Its threads end with the test.
