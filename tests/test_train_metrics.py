"""JSONL and TensorBoard event output (tensorboardX), read back with an independent protobuf schema of Event."""

import glob
import json
import os
import struct

import jax.numpy as jnp
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ssd_jax.train.metrics import MetricsWriter, ProgressBar, metric_by_step, truncate_jsonl


def _event_class():
  """tensorboard's Event / Summary / Summary.Value (scalar fields only), as published in event.proto."""
  T = descriptor_pb2.FieldDescriptorProto
  file = descriptor_pb2.FileDescriptorProto(name="tb_event_subset.proto", package="tbtest", syntax="proto3")
  value = file.message_type.add(name="Value")
  value.field.add(name="tag", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
  value.field.add(name="simple_value", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL)
  summary = file.message_type.add(name="Summary")
  summary.field.add(name="value", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED, type_name=".tbtest.Value")
  event = file.message_type.add(name="Event")
  event.field.add(name="wall_time", number=1, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
  event.field.add(name="step", number=2, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
  event.field.add(name="file_version", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
  event.field.add(name="summary", number=5, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL, type_name=".tbtest.Summary")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tbtest.Event"))


def _read_records(path):
  data = open(path, "rb").read()
  records, offset = [], 0
  while offset < len(data):
    header = data[offset : offset + 8]
    (length,) = struct.unpack("<Q", header)
    records.append(data[offset + 12 : offset + 12 + length])
    offset += 16 + length
  return records


def test_writer_jsonl_and_tensorboard_scalars(tmp_path):
  with MetricsWriter(tmp_path, is_primary=True) as writer:
    writer.write(1, {"loss": jnp.float32(2.5), "tokens": 12})
    writer.write(2, {"loss": 1.25, "tokens": jnp.array(7.0), "grad_norm": float("nan")})
  lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert lines == [
    {"step": 1, "loss": 2.5, "tokens": 12.0},
    {"step": 2, "loss": 1.25, "tokens": 7.0, "grad_norm": None},
  ]

  (path,) = glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
  event_cls = _event_class()
  events = [event_cls.FromString(record) for record in _read_records(path)]
  assert events[0].file_version == "brain.Event:2"
  scalars: dict[int, dict[str, float]] = {}
  for event in events[1:]:
    scalars.setdefault(event.step, {}).update({v.tag: v.simple_value for v in event.summary.value})
  assert scalars[1] == {"loss": 2.5, "tokens": 12.0}
  assert scalars[2]["loss"] == 1.25 and scalars[2]["tokens"] == 7.0


def test_non_primary_process_writes_nothing(tmp_path):
  writer = MetricsWriter(tmp_path / "logs", is_primary=False)
  writer.write(1, {"loss": 1.0})
  writer.close()
  assert not (tmp_path / "logs").exists()


def test_writer_rejects_non_scalar_metric(tmp_path):
  with MetricsWriter(tmp_path, tensorboard=False, is_primary=True) as writer:
    with pytest.raises(ValueError, match="per_token"):
      writer.write(1, {"per_token": jnp.ones(3)})


def test_progress_bar_tokens_per_second_is_positive():
  bar = ProgressBar(10, enabled=False)
  assert bar.update(1, tokens=100.0, loss=1.0) > 0
  bar.close()


def test_truncate_jsonl_drops_a_torn_last_line_only(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')  # Killed mid-append.
  truncate_jsonl(str(path), 2)
  assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
  path.write_text('{"step": 1}\n{"step": 2}')  # Whole but for its newline: kept, and later appends start a line.
  truncate_jsonl(str(path), 2)
  assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
  path.write_text('{"step": 1}\n{"st\n{"step": 2}\n')  # Damage before the last line is not a kill's: refused.
  with pytest.raises(json.JSONDecodeError):
    truncate_jsonl(str(path), 2)
  assert path.read_text() == '{"step": 1}\n{"st\n{"step": 2}\n'


def test_metric_by_step_reads_the_lines_that_hold_the_metric(tmp_path):
  path = tmp_path / "metrics.jsonl"
  assert metric_by_step(str(path), "loss") == {}
  path.write_text(
    '{"step": 0, "eval/pass@1": 0.5}\n{"step": 1, "loss": 2.0}\n{"step": 2, "loss": null}\n{"step": 3, "lo'
  )
  assert metric_by_step(str(path), "loss") == {1: 2.0, 2: None}  # The torn last line is left out.
