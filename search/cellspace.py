"""The TEA-DNN cell encoding as an optimizer design space.

The bridge between the genotype (``tea_keras.space``, no TensorFlow import)
and the optimizer library (``search.optimizer``, which knows no genotype):
``cell_space()`` is the space the search and the benchmarks' cell problems
optimize over, ``canonical_cells`` its canonical representative.
"""

from typing import Any

import numpy as np

from search.optimizer.design import CATEGORICAL, DesignSpace, Variable
from tea_keras import errors
from tea_keras import space


def cell_space(num_blocks: int = 5) -> DesignSpace:
  """The TEA-DNN cell encoding: ``4 * num_blocks`` categorical variables with
  ``tea_keras.space.cardinalities(num_blocks)`` values, named like
  ``b0.input1``; native points are ``Genotype.to_vector()``."""
  if int(num_blocks) != num_blocks or num_blocks < 1:
    raise errors.invalid_value("num_blocks", "a positive integer", num_blocks)
  cards = space.cardinalities(int(num_blocks))
  names = ["b%d.%s" % (i // 4, space.FIELDS[i % 4]) for i in range(len(cards))]
  return DesignSpace([Variable(n, CATEGORICAL, cardinality=c) for n, c in zip(names, cards)]
                    ).with_canonical(canonical_cells)


def canonical_cells(x: Any) -> np.ndarray:
  """(n, 4B) cell vectors with each block's branches in canonical order.

  A block's output is the SUM of its two branches, so ``(input1, op1)`` and
  ``(input2, op2)`` commute; the representative puts the smaller pair (by
  input, then op: the order of ``Genotype.key()``) first. Vector layout per
  block: ``input1, input2, op1, op2``."""
  x = np.array(x, dtype=float).reshape(np.shape(x)[0] if np.ndim(x) > 1 else 1, -1)
  blocks = x.reshape(x.shape[0], -1, 4)
  swap = (blocks[:, :, 0] > blocks[:, :, 1]) | (
      (blocks[:, :, 0] == blocks[:, :, 1]) & (blocks[:, :, 2] > blocks[:, :, 3]))
  blocks[swap] = blocks[swap][:, [1, 0, 3, 2]]
  return blocks.reshape(x.shape)
