r"""Training throughput of the search-time network: ``python -m tea_keras.benchmarks.train_throughput``.

Measures training images/second (``model.fit`` steps, Keras overhead
included) of the cell network at the search-time recipe (N = 2, F = 24,
batch 32 by default) on this machine, for each execution mode
(float32 / XLA ``jit_compile`` / mixed precision) and, within a mode, for two
inputs fed to the SAME compiled model:

* ``pipeline``: the real ``tea_keras.data.train_dataset`` (gather, crop, flip,
  brightness, contrast, normalize, batch, prefetch);
* ``cached``: the same batches materialised once as in-memory tensors.

The two inputs alternate ``--repeats`` times so that load from other
processes hits both alike; the medians are printed with their ratio and the
median of the per-repeat (paired) ratios, the figure least moved by load
spikes (target: pipeline within 10% of cached). Mixed precision is bfloat16 on CPU
(where the CPU has AVX512-BF16/AMX) and float16 on GPU. Example::

  python -m tea_keras.benchmarks.train_throughput --steps=40 --repeats=3 \
      --modes=fp32,xla,mixed --output_json=runs/throughput.json
"""

import json
import statistics
import sys
import time

from absl import app
from absl import flags

from tea_keras import data
from tea_keras import recipes
from tea_keras import space

FLAGS = flags.FLAGS
MODES = {"fp32": (False, False), "xla": (True, False), "mixed": (False, True),
         "xla_mixed": (True, True)}


def define_flags(flag_values=FLAGS):
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("genotype", "pnasnet5", "Cell (string, NAMED name or 'random').", **fv)
  flags.DEFINE_integer("num_cells", None, "N (default: the search recipe's).", **fv)
  flags.DEFINE_integer("filters", None, "F (default: the search recipe's).", **fv)
  flags.DEFINE_integer("batch_size", None, "Batch (default: the search recipe's).", **fv)
  flags.DEFINE_integer("steps", 40, "Timed steps per measurement.", **fv)
  flags.DEFINE_integer("warmup", 5, "Untimed steps after compiling.", **fv)
  flags.DEFINE_integer("repeats", 3, "Alternations of pipeline and cached input.", **fv)
  flags.DEFINE_list("modes", "fp32,xla,mixed", "Modes among %s." % ", ".join(MODES), **fv)
  flags.DEFINE_string("output_json", None, "Also write the results here.", **fv)


def cached_dataset(dataset, num_batches: int):
  """``num_batches`` batches of ``dataset`` materialised as tensors, repeated."""
  # TensorFlow: heavy, imported only when this runs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  xs, ys = [], []
  for x, y in dataset.take(num_batches):
    xs.append(x)
    ys.append(y)
  cached = tf.data.Dataset.from_tensor_slices((tf.stack(xs), tf.stack(ys)))
  return cached.repeat().prefetch(tf.data.AUTOTUNE)


def images_per_second(model, dataset, steps: int, batch_size: int) -> float:
  """Wall-clock images/s of ``steps`` ``model.fit`` steps on ``dataset``."""
  start = time.perf_counter()
  model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
  return steps * batch_size / (time.perf_counter() - start)


def measure_mode(genotype, recipe, splits, jit_compile, mixed, steps, warmup, repeats):
  """Median images/s of pipeline and cached input for one execution mode."""
  # Keras (through this module): heavy, imported only when this runs.
  from tea_keras import training  # pylint: disable=g-import-not-at-top
  recipe = recipe.replace(jit_compile=jit_compile, mixed_precision=mixed)
  model = training.build_cell_network(genotype, recipe, recipe.num_cells, recipe.filters)
  training.set_batch_norm(model, recipe.bn_momentum, recipe.bn_epsilon)
  spe = data.steps_per_epoch(len(splits.x_train), recipe.batch_size)
  training.compile_model(model, recipe, spe, jit_compile=jit_compile)
  total = (warmup + steps * repeats) * 2
  pipeline = data.train_dataset(
      splits.x_train, splits.y_train, batch_size=recipe.batch_size, seed=0,
      augmentation=training.augmentation(recipe), num_epochs=total // spe + 1).repeat()
  cached = cached_dataset(pipeline, spe)
  start = time.perf_counter()
  model.fit(cached, epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False)
  compile_seconds = time.perf_counter() - start
  rates = {"pipeline": [], "cached": []}
  for _ in range(repeats):
    for name, ds in (("pipeline", pipeline), ("cached", cached)):
      rates[name].append(images_per_second(model, ds, steps, recipe.batch_size))
  out = {k: statistics.median(v) for k, v in rates.items()}
  paired = [p / c for p, c in zip(rates["pipeline"], rates["cached"])]
  out.update(runs=rates, compile_and_warmup_seconds=compile_seconds,
             params=int(model.count_params()),
             pipeline_over_cached=out["pipeline"] / out["cached"],
             paired_ratio_median=statistics.median(paired))
  return out


def main(argv):
  del argv
  overrides = {k: getattr(FLAGS, k) for k in ("num_cells", "filters", "batch_size")
               if getattr(FLAGS, k) is not None}
  recipe = recipes.search_recipe(**overrides)
  unknown = [m for m in FLAGS.modes if m not in MODES]
  if unknown:
    sys.exit("train_throughput: error: unknown --modes %s; expected among %s"
             % (unknown, ", ".join(MODES)))
  genotype = space.resolve(FLAGS.genotype, 0)
  splits = data.load("cifar10_sample")
  # Keras (through this module): heavy, imported only when this runs.
  from tea_keras import training  # pylint: disable=g-import-not-at-top
  results = {"genotype": genotype.to_string(), "recipe": recipe.to_dict(),
             "device": training.device_kind(), "modes": {}}
  print("search-time network N=%d F=%d batch %d, %d steps x %d repeats, device %s"
        % (recipe.num_cells, recipe.filters, recipe.batch_size, FLAGS.steps, FLAGS.repeats,
           results["device"]), flush=True)
  for mode in FLAGS.modes:
    jit, mixed = MODES[mode]
    r = measure_mode(genotype, recipe, splits, jit, mixed, FLAGS.steps, FLAGS.warmup,
                     FLAGS.repeats)
    results["modes"][mode] = r
    print("%-10s pipeline %7.1f img/s  cached %7.1f img/s  pipeline/cached %.3f  "
          "median paired ratio %.3f  (compile+warmup %.0f s; runs %s)"
          % (mode, r["pipeline"], r["cached"], r["pipeline_over_cached"],
             r["paired_ratio_median"],
             r["compile_and_warmup_seconds"],
             {k: [round(v, 1) for v in vs] for k, vs in r["runs"].items()}), flush=True)
  if FLAGS.output_json:
    with open(FLAGS.output_json, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
