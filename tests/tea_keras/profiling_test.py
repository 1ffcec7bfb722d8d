"""Tests for tea_keras/profiling.py and the profile CLI."""

import json
import subprocess
import sys

import keras
import tensorflow as tf
from keras import layers

from tea_keras import network
from tea_keras import profiling
from tea_keras import space


class ProfilingTest(tf.test.TestCase):

  def test_profile_counts_macs_by_hand(self):
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)          # 8*8*3*3*3*4
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)              # 4*4*3*3*4
    x = layers.Flatten()(x)
    y = layers.Dense(5)(x)                                                   # 64*5
    result = profiling.profile_model(keras.Model(inputs, y))
    self.assertEqual(result["flops"], 8 * 8 * 27 * 4 + 4 * 4 * 9 * 4 + 64 * 5)
    self.assertEqual(result["params"], 3 * 3 * 3 * 4 + (9 * 4 + 4) + (64 * 5 + 5))

  def test_profile_counts_only_what_the_output_depends_on(self):
    """A layer that computes a branch and drops it (as a cell that never reads
    one of its inputs did): the branch's weights and MACs are not counted."""

    class Discarding(layers.Layer):

      def build(self, input_shape):
        self.used = layers.Conv2D(4, 1, use_bias=False)
        self.dropped = layers.Conv2D(6, 3, use_bias=False)
        self.used.build(input_shape)
        self.dropped.build(input_shape)

      def call(self, x):
        self.dropped(x)
        return self.used(x)

    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, Discarding()(inputs))
    result = profiling.profile_model(model)
    self.assertEqual((result["params"], result["trainable_params"]), (2 * 4, 2 * 4))
    self.assertEqual(result["flops"], 8 * 8 * 2 * 4)
    self.assertEqual(result["peak_activation_bytes"], 4 * 64 * (2 + 4))

  def test_peak_activation_bytes_of_chain(self):
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 1, use_bias=False)(inputs)
    y = layers.Conv2D(1, 1, use_bias=False)(x)
    peak = profiling.profile_model(keras.Model(inputs, y))["peak_activation_bytes"]
    # The largest live pair is the 8x8x2 input with the 8x8x4 conv output.
    self.assertEqual(peak, 4 * 64 * (2 + 4))

  def test_profile_grows_with_n_and_f(self):
    g = space.sample(5)
    small = profiling.profile_model(network.build_network(g, 1, 8))
    deeper = profiling.profile_model(network.build_network(g, 2, 8))
    wider = profiling.profile_model(network.build_network(g, 1, 16))
    for key in ("params", "flops"):
      self.assertGreater(small[key], 0)
      self.assertGreater(deeper[key], small[key])
      self.assertGreater(wider[key], small[key])
    self.assertGreater(wider["peak_activation_bytes"], small["peak_activation_bytes"])

  def test_cli_prints_json_and_rejects_bad_genotype(self):
    cmd = [sys.executable, "-m", "tea_keras.profile", "--genotype=random", "--seed=2",
           "--num_cells=1", "--filters=4"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertEqual(result["genotype"], space.sample(2).to_string())
    self.assertGreater(result["flops"], 0)
    bad = subprocess.run(cmd[:3] + ["--genotype=sep3x3(b3)+identity(prev)"],
                         capture_output=True, text=True)
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("block 0 has input 'b3'", bad.stderr)

  def test_cli_random_cells_median_matches_built_models(self):
    cmd = [sys.executable, "-m", "tea_keras.profile", "--random_cells=5", "--seed=4",
           "--num_cells=1", "--filters=4"]
    result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True)
                        .stdout.strip().splitlines()[-1])
    import numpy as np  # pylint: disable=g-import-not-at-top
    counts = [network.build_network(g, 1, 4).count_params()
              for g in space.sample_many(np.random.default_rng(4), 5)]
    self.assertEqual(result["params"]["median"], float(np.median(counts)))
    self.assertEqual(result["params"]["max"], float(max(counts)))


if __name__ == "__main__":
  tf.test.main()
