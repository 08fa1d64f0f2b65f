"""SamplingParams validation and broadcasting to per-row arrays."""

import jax
import numpy as np
import pytest

from ssd_jax.sampling.params import RowParams, SamplingParams, as_row_params


@pytest.mark.parametrize(
  "field,value",
  [
    ("temperature", -0.1),
    ("temperature", float("nan")),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("min_p", -0.1),
    ("min_p", 1.0),
    ("top_k", 2.5),
  ],
)
def test_bad_values_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    SamplingParams(**{field: value})


def test_off_values_are_valid():
  params = SamplingParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)
  assert params.greedy
  assert not SamplingParams(temperature=0.7).greedy


def test_rows_broadcast_and_per_row_lists():
  rows = SamplingParams(temperature=0.8, top_k=20, top_p=0.95, min_p=0.05).rows(3)
  np.testing.assert_allclose(rows.temperature, [0.8] * 3)
  np.testing.assert_array_equal(rows.top_k, [20] * 3)
  assert rows.top_k.dtype == np.int32 and rows.top_p.dtype == np.float32
  mixed = as_row_params([SamplingParams(top_k=5), SamplingParams(temperature=0.0, top_p=0.5)])
  np.testing.assert_array_equal(mixed.top_k, [5, 0])
  np.testing.assert_allclose(mixed.temperature, [1.0, 0.0])
  np.testing.assert_allclose(mixed.top_p, [1.0, 0.5])


def test_row_params_checks():
  with pytest.raises(ValueError, match="batch is required"):
    as_row_params(SamplingParams())
  with pytest.raises(ValueError, match="2 rows but the batch has 3"):
    as_row_params([SamplingParams()] * 2, batch=3)
  with pytest.raises(ValueError, match="shape"):
    as_row_params(RowParams(np.ones(2), np.ones(3), np.ones(2), np.ones(2)))
  rows = as_row_params(RowParams(np.ones(2), np.ones(2), np.ones(2), np.zeros(2)))
  assert rows.top_k.dtype == np.int32 and rows.batch == 2
  # Concrete values are checked as SamplingParams checks them (each path would read them its own way);
  # traced ones pass through.
  bad = {"temperature": -1.0, "top_p": 0.0, "min_p": 1.5}
  for field, value in bad.items():
    fields = {"temperature": [1.0, 1.0], "top_k": [0, 0], "top_p": [1.0, 1.0], "min_p": [0.0, 0.0]}
    fields[field][1] = value
    with pytest.raises(ValueError, match=rf"RowParams row 1: {field} must be"):
      as_row_params(RowParams(*(np.asarray(v) for v in fields.values())))
  traced = jax.jit(lambda t: as_row_params(RowParams(t, np.zeros(2), np.ones(2), np.zeros(2))).temperature)
  np.testing.assert_array_equal(traced(np.array([-1.0, 2.0], np.float32)), [-1.0, 2.0])
