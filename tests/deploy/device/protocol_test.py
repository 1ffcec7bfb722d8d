"""Tests of deploy/device/protocol.py: integration, segmentation, sampler, CSV."""

import os
import time

import numpy as np
import tensorflow as tf

from deploy.device import protocol
from deploy.device.power import base


def _true_power(t, t_on=2.0, t_off=12.0):
  """Idle 10 W; working 100 + 15 sin(2 pi t / 0.37) W on [t_on, t_off)."""
  working = (t >= t_on) & (t < t_off)
  return np.where(working, 100.0 + 15.0 * np.sin(2 * np.pi * t / 0.37), 10.0)


def _true_energy(t_on=2.0, t_off=12.0):
  w = 2 * np.pi / 0.37
  return 100.0 * (t_off - t_on) - 15.0 / w * (np.cos(w * t_off) - np.cos(w * t_on))


def _sampled(rng, interval=0.02, duration=14.0, jitter=0.002, noise=0.0):
  t = np.arange(rng.uniform(0, interval), duration, interval)
  t = np.sort(t + rng.uniform(-jitter, jitter, t.shape))
  p = _true_power(t) + rng.normal(0, noise, t.shape) if noise else _true_power(t)
  return protocol.Trace(t, p)


class IntegrationTest(tf.test.TestCase):

  def test_trapezoid_energy_exact_on_linear_power(self):
    trace = protocol.Trace([0.0, 1.0, 2.0, 3.0], [0.0, 2.0, 4.0, 6.0])
    # P = 2t: integral over [0.5, 2.5] = 2.5**2 - 0.5**2 = 6.
    self.assertAllClose(protocol.trapezoid_energy(trace, 0.5, 2.5), 6.0)

  def test_trapezoid_energy_known_energy_within_half_percent(self):
    rng = np.random.default_rng(0)
    for _ in range(20):
      trace = _sampled(rng)
      span = protocol.segment_working(trace, 80.0)
      self.assertIsNotNone(span)
      energy = protocol.trapezoid_energy(trace, span[0], span[1])
      self.assertLess(abs(energy / _true_energy() - 1.0), 0.005)
      self.assertAllClose(span[1] - span[0], 10.0, atol=0.04)  # 2 intervals

  def test_trapezoid_energy_rejects_reversed_window(self):
    trace = protocol.Trace([0.0, 1.0], [1.0, 1.0])
    with self.assertRaisesRegex(ValueError, "t_end"):
      protocol.trapezoid_energy(trace, 1.0, 0.5)

  def test_counter_energy_interpolates_counter(self):
    trace = protocol.Trace([0, 1, 2], [5, 5, 5], [100.0, 105.0, 110.0])
    self.assertAllClose(protocol.counter_energy(trace, 0.5, 1.5), 5.0)
    self.assertIsNone(protocol.counter_energy(protocol.Trace([0, 1], [1, 1]), 0, 1))


class SegmentationTest(tf.test.TestCase):

  def _noisy_trace(self, seed):
    rng = np.random.default_rng(seed)
    trace = _sampled(rng, noise=3.0)
    p = trace.p.copy()
    idle = np.flatnonzero((trace.t < 1.7) | (trace.t > 12.3))  # > merge gap away
    p[rng.choice(idle, 6, replace=False)] = 130.0         # single-sample spikes
    for start in (4.0, 7.0, 9.5):                          # 60 ms dips mid-run
      p[(trace.t >= start) & (trace.t < start + 0.06)] = 30.0
    return protocol.Trace(trace.t, p)

  def test_segment_working_ignores_spikes_and_merges_dips(self):
    for seed in range(5):
      trace = self._noisy_trace(seed)
      span = protocol.segment_working(trace, 80.0)
      self.assertAllClose(span[0], 2.0, atol=0.025)
      self.assertAllClose(span[1], 12.0, atol=0.025)

  def test_segment_working_drops_clustered_spikes(self):
    t = np.arange(0, 6, 0.02)
    p = np.full(t.shape, 10.0)
    p[[20, 25, 30]] = 120.0                              # 3 spikes within 0.2 s
    p[(t >= 3.0) & (t < 5.0)] = 100.0
    span = protocol.segment_working(protocol.Trace(t, p), 80.0)
    self.assertAllClose(span[:2], (3.0, 5.0), atol=0.02)

  def test_segment_working_splits_without_merge(self):
    trace = self._noisy_trace(0)
    runs = protocol.merge_runs(trace.t, protocol.runs_above(trace.p, 80.0), 0.0)
    long_runs = [r for r in runs if trace.t[r[1]] - trace.t[r[0]] > 1.0]
    self.assertLen(long_runs, 4)

  def test_segment_working_within_window_drops_far_runs(self):
    t = np.arange(0, 10, 0.02)
    p = np.where((t > 1) & (t < 1.5), 100.0, 10.0)     # a stray 0.5 s burst
    p = np.where((t > 5) & (t < 8), 100.0, p)
    trace = protocol.Trace(t, p)
    self.assertAllClose(protocol.segment_working(trace, 50.0)[0], 1.0, atol=0.02)
    span = protocol.segment_working(trace, 50.0, within=(5.0, 8.0))
    self.assertAllClose(span[:2], (5.0, 8.0), atol=0.02)

  def test_segment_working_none_when_threshold_above_trace(self):
    trace = protocol.Trace(np.arange(0, 1, 0.02), np.full(50, 5.0))
    self.assertIsNone(protocol.segment_working(trace, 80.0))

  def test_crossing_time_interpolates(self):
    t, p = np.array([0.0, 1.0]), np.array([0.0, 100.0])
    self.assertAllClose(protocol.crossing_time(t, p, 0, 1, 80.0), 0.8)

  def test_idle_baseline_and_auto_threshold(self):
    trace = _sampled(np.random.default_rng(1))
    span = protocol.segment_working(trace, 80.0)
    self.assertAllClose(protocol.idle_baseline(trace, span), 10.0)
    self.assertAllClose(protocol.auto_threshold(trace, (2.0, 12.0)), 55.0, atol=2.0)

  def test_summarize_repeats_median_and_cv(self):
    s = protocol.summarize_repeats([1.0, 2.0, None, 3.0])
    self.assertEqual(s["median"], 2.0)
    self.assertEqual(s["n"], 3)
    self.assertAllClose(s["cv"], 0.5)
    self.assertIsNone(protocol.summarize_repeats([None]))


class _RampSource(base.PowerSource):
  """A real source whose power is a known function of the clock."""
  name = "ramp"

  def read_w(self):
    return 3.0 * time.monotonic()


class SamplerTest(tf.test.TestCase):

  def test_sampler_ticks_without_drift(self):
    with protocol.Sampler(_RampSource(), 0.02) as sampler:
      time.sleep(0.5)
      trace = sampler.stop()
    self.assertBetween(len(trace), 23, 28)
    self.assertAllClose(np.median(np.diff(trace.t)), 0.02, atol=0.003)
    self.assertAllClose(trace.p, 3.0 * trace.t, atol=0.05)
    self.assertTrue(np.isnan(trace.counter_j).all())

  def test_sampler_rejects_bad_interval(self):
    with self.assertRaisesRegex(ValueError, "sample_interval_s"):
      protocol.Sampler(_RampSource(), 0.0)

  def test_sampler_surfaces_reader_errors(self):
    class Broken(_RampSource):
      def read_w(self):
        raise base.PowerSourceError("unplugged")
    sampler = protocol.Sampler(Broken(), 0.01).start()
    time.sleep(0.05)
    with self.assertRaisesRegex(base.PowerSourceError, "unplugged"):
      sampler.stop()


class TraceCsvTest(tf.test.TestCase):

  def test_write_trace_csv_round_trip(self):
    trace = protocol.Trace([10.0, 10.02, 10.04], [1.0, np.nan, 3.0], [0.0, 0.5, np.nan])
    path = os.path.join(self.get_temp_dir(), "trace.csv")
    protocol.write_trace_csv(path, trace, span=(10.0, 10.04, 1, 2))
    back = protocol.read_trace_csv(path)
    self.assertAllClose(back.t, [0.0, 0.02, 0.04])
    self.assertAllClose(back.p, [1.0, np.nan, 3.0])
    with open(path) as f:
      self.assertEqual([l.strip().split(",")[-1] for l in f][1:], ["0", "1", "1"])

  def test_trace_rejects_mismatched_arrays(self):
    with self.assertRaisesRegex(ValueError, "one length"):
      protocol.Trace([0, 1], [1])


if __name__ == "__main__":
  tf.test.main()
