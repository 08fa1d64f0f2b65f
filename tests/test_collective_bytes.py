"""Collective bytes read from HLO text: every collective kind, loop bodies once per trip."""

from ssd_jax.collective_bytes import collective_bytes

HLO = """
%body (p: (s32[], f32[8,4])) -> (s32[], f32[8,4]) {
  %a2a = f32[8,4]{1,0} all-to-all(f32[8,4]{1,0} %x), replica_groups={{0,1}}, dimensions={0}
  %ragged = bf16[16,4]{1,0} ragged-all-to-all(bf16[4,4]{1,0} %in, bf16[16,4]{1,0} %out, s32[2]{0} %o, s32[2]{0} %s), replica_groups={{0,1}}
}

ENTRY %main (x: f32[8,4]) -> f32[8,4] {
  %ag = f32[16,4]{1,0} all-gather(f32[8,4]{1,0} %x), replica_groups={{0,1}}, dimensions={0}
  %loop = (s32[], f32[8,4]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
}
"""


def test_every_kind_is_counted_once_per_loop_trip():
  assert collective_bytes(HLO) == {
    "all-gather": 16 * 4 * 4,
    "all-to-all": 3 * 8 * 4 * 4,
    # Its whole output buffer: the worst case of what a ragged exchange moves.
    "ragged-all-to-all": 3 * 16 * 4 * 2,
  }
