"""Tests for tea_keras/space.py (no TensorFlow needed, but run under tf.test)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tea_keras import space

# TF-slim research/slim/nets/nasnet/pnasnet.py, PNasNetNormalCell, as slim
# states it (slim's hidden state 0 is the previous cell, 1 the one before).
SLIM_PNASNET5 = dict(
    operations=["separable_5x5_2", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
                "separable_5x5_2", "separable_3x3_2", "separable_3x3_2", "max_pool_3x3",
                "separable_3x3_2", "none"],
    used_hiddenstates=[1, 1, 0, 0, 0, 0, 0],
    hiddenstate_indices=[1, 1, 0, 0, 0, 0, 4, 0, 1, 0],
)
_SLIM_OPS = {"separable_3x3_2": "sep3x3", "separable_5x5_2": "sep5x5",
             "separable_7x7_2": "sep7x7", "max_pool_3x3": "max3x3", "none": "identity"}


def from_slim(operations, hiddenstate_indices, used_hiddenstates):
  """Translate a slim ``NasNetABaseCell`` configuration into a Genotype.

  slim's cell: ``net = [prev, prev_prev]``, block ``j`` appends
  ``op[2j](net[idx[2j]]) + op[2j+1](net[idx[2j+1]])``, and the output
  concatenates the states whose ``used_hiddenstates`` entry is 0.
  """
  swap = {0: 1, 1: 0}  # slim 0 = previous cell = our index 1 (prev)
  blocks = []
  for j in range(len(operations) // 2):
    in1, in2 = (swap.get(i, i) for i in hiddenstate_indices[2 * j:2 * j + 2])
    blocks.append(space.Block(in1, in2, _SLIM_OPS[operations[2 * j]],
                              _SLIM_OPS[operations[2 * j + 1]]))
  assert used_hiddenstates[:2] == [1, 1], "our cells never concatenate a cell input"
  concatenated = tuple(j for j, used in enumerate(used_hiddenstates[2:]) if not used)
  for concat in space.CONCATS:
    genotype = space.Genotype(tuple(blocks), concat)
    if genotype.output_blocks() == concatenated:
      return genotype
  raise ValueError("slim concatenates blocks %s: no rule of ours does" % (concatenated,))


class SpaceTest(tf.test.TestCase, parameterized.TestCase):

  def test_cardinalities_match_paper(self):
    self.assertEqual(space.cardinalities(),
                     (2, 2, 8, 8, 3, 3, 8, 8, 4, 4, 8, 8, 5, 5, 8, 8, 6, 6, 8, 8))
    self.assertLen(space.cardinalities(), 20)

  def test_space_size_equals_formula(self):
    self.assertEqual(space.space_size(), (2 * 3 * 4 * 5 * 6) ** 2 * 8 ** 10)
    self.assertAllClose(space.space_size(), 5.566e14, rtol=1e-3)

  def test_ops_are_papers_eight_in_order(self):
    self.assertEqual(space.OPS, ("max3x3", "identity", "sep3x3", "conv3x3",
                                 "sep5x5", "conv5x5", "sep7x7", "conv7x7"))

  def test_vector_round_trip_random(self):
    rng = np.random.default_rng(0)
    for _ in range(500):
      g = space.sample(rng)
      vec = g.to_vector()
      self.assertLen(vec, 20)
      self.assertTrue(all(0 <= v < c for v, c in zip(vec, space.cardinalities())))
      self.assertEqual(space.Genotype.from_vector(vec), g)

  def test_string_and_json_round_trip_random(self):
    rng = np.random.default_rng(1)
    for _ in range(500):
      g = space.sample(rng)
      self.assertEqual(space.Genotype.parse(g.to_string()), g)
      self.assertEqual(space.Genotype.from_json(g.to_json()), g)

  def test_parse_ignores_whitespace(self):
    g = space.resolve("pnasnet5")
    self.assertEqual(space.Genotype.parse(g.to_string().replace(" ", "\n  ")), g)

  @parameterized.parameters(
      (0, 2, "input1", r"block 0 field `input1` must be an integer in \[0, 1\]"),
      (1, 3, "input2", r"block 0 field `input2`"),
      (4, 3, "input1", r"block 1 field `input1` must be an integer in \[0, 2\]"),
      (19, 8, "op2", r"block 4 field `op2` must be an integer in \[0, 7\]"),
      (2, -1, "op1", r"block 0 field `op1`"),
      (16, 6, "input1", r"block 4 field `input1` must be an integer in \[0, 5\]"),
  )
  def test_from_vector_rejects_out_of_range(self, position, value, field, message):
    vec = space.sample(0).to_vector()
    vec[position] = value
    with self.assertRaisesRegex(ValueError, message):
      space.Genotype.from_vector(vec)

  def test_every_invalid_field_rejected(self):
    cards = space.cardinalities()
    for pos, card in enumerate(cards):
      for bad in (-1, card):
        vec = [0] * 20
        vec[pos] = bad
        with self.assertRaisesRegex(ValueError, "block %d field `%s`" % (pos // 4, space.FIELDS[pos % 4])):
          space.Genotype.from_vector(vec)

  def test_from_vector_rejects_wrong_length(self):
    with self.assertRaisesRegex(ValueError, "multiple of 4 integers.*received 7"):
      space.Genotype.from_vector([0] * 7)

  def test_block_rejects_unknown_op(self):
    with self.assertRaisesRegex(ValueError, "block 0 field `op1` must be one of"):
      space.Genotype((space.Block(0, 1, "conv9x9", "identity"),))

  @parameterized.parameters(
      ("sep3x3(prev)+max3x3(prev_prev); conv3x3(b1)+identity(prev)", r"block 1 has input 'b1'"),
      ("sep3x3(prev)+max9x9(prev_prev)", r"block 0 has unknown op 'max9x9'"),
      ("sep3x3(prev)max3x3(prev_prev)", r"block 0 'sep3x3\(prev\)max3x3\(prev_prev\)' is not of the form"),
      ("", r"expected blocks like"),
  )
  def test_parse_errors_point_at_bad_token(self, text, message):
    with self.assertRaisesRegex(ValueError, message):
      space.Genotype.parse(text)

  def test_key_identifies_commuted_branches(self):
    g = space.Genotype.parse("sep3x3(prev)+max3x3(prev_prev)")
    swapped = space.Genotype.parse("max3x3(prev_prev)+sep3x3(prev)")
    other = space.Genotype.parse("max3x3(prev)+sep3x3(prev_prev)")
    self.assertEqual(g.key(), swapped.key())
    self.assertNotEqual(g.key(), other.key())

  def test_sample_is_seeded(self):
    self.assertEqual(space.sample(7), space.sample(7))
    self.assertNotEqual(space.sample_many(7, 5), space.sample_many(8, 5))

  def test_sample_is_uniform_per_position(self):
    vecs = np.array([g.to_vector() for g in space.sample_many(3, 4000)])
    for pos, card in enumerate(space.cardinalities()):
      counts = np.bincount(vecs[:, pos], minlength=card)
      self.assertLen(counts, card)
      self.assertAllClose(counts / len(vecs), np.full(card, 1.0 / card), atol=0.03)

  @parameterized.parameters(None, "input", "op")
  def test_mutate_changes_exactly_one_field(self, field):
    rng = np.random.default_rng(5)
    for _ in range(200):
      g = space.sample(rng)
      m = space.mutate(g, rng, field=field)
      diff = [i for i, (a, b) in enumerate(zip(g.to_vector(), m.to_vector())) if a != b]
      self.assertLen(diff, 1)
      if field is not None:
        self.assertEqual(diff[0] % 4 < 2, field == "input")

  def test_neighbours_count(self):
    g = space.sample(0)
    expected = sum(c - 1 for c in space.cardinalities())
    self.assertLen(list(space.neighbours(g)), expected)

  def test_output_blocks_are_unused_ones(self):
    g = space.Genotype(space.resolve("pnasnet5").blocks)
    self.assertEqual(g.concat, "unused")
    self.assertEqual(g.used_blocks(), (2,))
    self.assertEqual(g.output_blocks(), (0, 1, 3, 4))
    self.assertEqual(space.resolve("chain").output_blocks(), (4,))

  def test_pnasnet5_preset_is_slims_cell(self):
    expected = from_slim(**SLIM_PNASNET5)
    self.assertEqual(expected.concat, "all")
    self.assertEqual(space.resolve("pnasnet5"), expected)
    self.assertEqual(space.resolve("pnasnet5").output_blocks(), (0, 1, 2, 3, 4))

  def test_concat_all_round_trips(self):
    rng = np.random.default_rng(2)
    for _ in range(200):
      g = space.Genotype(space.sample(rng).blocks, "all")
      self.assertEqual(space.Genotype.parse(g.to_string()), g)
      self.assertEqual(space.Genotype.from_json(g.to_json()), g)
      self.assertEqual(space.Genotype.from_vector(g.to_vector(), "all"), g)
      self.assertEqual(space.mutate(g, rng).concat, "all")
    self.assertTrue(space.resolve("pnasnet5").to_string().endswith("| concat=all"))
    self.assertNotIn("concat", space.resolve("chain").to_string())

  def test_json_without_concat_is_default(self):
    g = space.sample(5)
    legacy = '{"blocks": %s}' % json.dumps([dataclasses.asdict(b) for b in g.blocks])
    self.assertEqual(space.Genotype.from_json(legacy), g)

  def test_key_separates_concat_only_where_it_changes_the_network(self):
    chain = space.resolve("chain")  # every block feeds the next: rules differ
    self.assertNotEqual(dataclasses.replace(chain, concat="all").key(), chain.key())
    flat = space.Genotype.parse("sep3x3(prev)+max3x3(prev_prev); conv3x3(prev)+identity(prev)")
    self.assertEqual(flat.used_blocks(), ())  # no block feeds another: one network
    self.assertEqual(dataclasses.replace(flat, concat="all").key(), flat.key())

  @parameterized.parameters(
      ("sep3x3(prev)+max3x3(prev_prev) | concat=some", r"suffix '\| concat=RULE'.*'\| concat=some'"),
      ("sep3x3(prev)+max3x3(prev_prev) | all", r"suffix '\| concat=RULE' with RULE one of unused, all"),
  )
  def test_parse_rejects_bad_concat_suffix(self, text, message):
    with self.assertRaisesRegex(ValueError, message):
      space.Genotype.parse(text)

  def test_validate_rejects_unknown_concat(self):
    with self.assertRaisesRegex(ValueError, "field `concat` must be one of unused, all, "
                                "received 'used'"):
      space.Genotype(space.sample(0).blocks, "used")

  def test_network_layout_wiring(self):
    """N=1 by hand: cell k reads the states of cells k-2 and k-1 (the stem,
    -1, before cell 0); widths double at the stride-2 cells 1 and 3; a cell
    right after a stride-2 cell gets prev_prev at twice prev's resolution."""
    layout = space.network_layout(1)
    self.assertEqual([c.stride for c in layout], [1, 2, 1, 2, 1])
    self.assertEqual([c.inputs for c in layout],
                     [(-1, -1), (-1, 0), (0, 1), (1, 2), (2, 3)])
    self.assertEqual([c.width for c in layout], [1, 2, 2, 4, 4])
    self.assertEqual([c.reduce_prev_prev for c in layout], [False, False, True, False, True])
    self.assertEqual([c.index for c in space.network_layout(2)], list(range(8)))

  @parameterized.parameters(
      ("sep3x3(prev)+max3x3(prev_prev)", (0, 1), 1, (True,) * 5),
      ("sep3x3(prev)+max3x3(prev); conv3x3(b0)+identity(prev)", (1,), 1, (True,) * 5),
      # Only prev_prev read: the last cell (3N+1) reads cell 3N-1, which reads
      # 3N-3, ... down to the stem; the cells in between reach no logit.
      ("sep3x3(prev_prev)+max3x3(prev_prev); conv3x3(b0)+identity(prev_prev)", (0,), 1,
       (True, False, True, False, True)),
      ("sep3x3(prev_prev)+max3x3(prev_prev)", (0,), 2, (False, True) * 4),
  )
  def test_live_cells_walk_back_from_the_last_cell(self, text, reads, n, expected):
    genotype = space.Genotype.parse(text)
    self.assertEqual(genotype.inputs_read(), reads)
    self.assertEqual(space.live_cells(genotype, n), expected)

  def test_import_does_not_import_tensorflow(self):
    code = "import sys, tea_keras.space; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    self.assertEqual(out.stdout.strip(), "False")


if __name__ == "__main__":
  tf.test.main()
