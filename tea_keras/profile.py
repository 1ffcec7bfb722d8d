"""Print the static cost of a network as one JSON object.

  python -m tea_keras.profile --genotype=pnasnet5 --num_cells=2 --filters=24
  python -m tea_keras.profile --genotype=random --seed=3 --num_cells=1 --filters=8
  python -m tea_keras.profile --model=densenet40
  python -m tea_keras.profile --random_cells=200 --seed=0 --num_cells=1 --filters=8

``--random_cells=K`` counts K uniform random cells analytically
(``tea_keras.cost``, no model built) and prints the quantiles of their
parameters and peak activation bytes: a budget at the median
(``--max_params`` of ``python -m search.run``) keeps about half the space.

``--genotype`` takes a string form (see ``tea_keras.space``), a named cell
(``pnasnet5``, ``chain``) or ``random``. See ``tea_keras.profiling`` for how
``flops`` (multiply-accumulates) and ``peak_activation_bytes`` are counted.
Every count is of the network that is built and exported: its live cells
only; ``dead_cells`` lists the positions left out (a cell that never reads
``prev`` leaves every other one dead; ``tea_keras.space``, "Dead cells").
"""

import json
import sys

import numpy as np
from absl import app
from absl import flags

from tea_keras import console
from tea_keras import cost
from tea_keras import space

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags; defined only when run as a program."""
  flags.DEFINE_enum("model", "cell", ["cell", "densenet40"], "Which network to profile.")
  flags.DEFINE_string("genotype", "random", "Cell genotype: string form, a named cell or "
                      "'random'.")
  flags.DEFINE_integer("seed", 0, "Seed for --genotype=random.", lower_bound=0)
  flags.DEFINE_integer("num_cells", 2, "N: cells per stage.", lower_bound=1)
  flags.DEFINE_integer("filters", 24, "F: initial filters.", lower_bound=2)
  flags.DEFINE_integer("random_cells", None, "Count this many uniform random cells (seeded "
                       "by --seed) analytically and print quantiles.", lower_bound=1)


def random_cells_summary(count, seed, num_cells, filters):
  """Quantiles of the analytic costs of ``count`` uniform random cells."""
  cells = space.sample_many(np.random.default_rng(seed), count)
  costs = [cost.genotype_cost(g, num_cells, filters) for g in cells]
  out = {"random_cells": count, "seed": seed, "num_cells": num_cells, "filters": filters}
  for key in ("params", "peak_activation_bytes"):
    values = np.array([c[key] for c in costs], float)
    out[key] = {name: float(np.quantile(values, q)) for name, q in
                (("min", 0.0), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("max", 1.0))}
  return out


def main(argv):
  del argv
  console.quiet_native_logs()
  if FLAGS.random_cells:
    print(json.dumps(random_cells_summary(FLAGS.random_cells, FLAGS.seed, FLAGS.num_cells,
                                          FLAGS.filters)))
    return
  try:
    genotype = space.resolve(FLAGS.genotype, FLAGS.seed) if FLAGS.model == "cell" else None
  except ValueError as e:
    sys.exit("error: --genotype: %s" % e)
  # Keras, imported only to build a model (--random_cells and --help need no TensorFlow).
  from tea_keras import densenet  # pylint: disable=g-import-not-at-top
  from tea_keras import network  # pylint: disable=g-import-not-at-top
  from tea_keras import profiling  # pylint: disable=g-import-not-at-top
  if genotype is None:
    model = densenet.build_densenet40()
    result = {"model": "densenet40"}
  else:
    model = network.build_network(genotype, FLAGS.num_cells, FLAGS.filters)
    result = {"model": "cell", "genotype": genotype.to_string(), "num_cells": FLAGS.num_cells,
              "filters": FLAGS.filters, "dead_cells": [
                  i for i, live in enumerate(space.live_cells(genotype, FLAGS.num_cells))
                  if not live]}
  result.update(profiling.profile_model(model))
  print(json.dumps(result))


if __name__ == "__main__":
  define_flags()
  app.run(main)
