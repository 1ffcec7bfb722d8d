"""The TEA-DNN cell encoding as an optimizer design space.

The bridge between the genotype (``tea_keras.space``, no TensorFlow import)
and the optimizer library (``search.optimizer``, which knows no genotype):
``cell_space()`` is the space the search and the benchmarks' cell problems
optimize over, ``canonical_cells`` its canonical representative.
"""

from typing import Any, Callable

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


def _restricted(design_space: DesignSpace) -> bool:
  return getattr(design_space, "constraint", None) is not None


def feasible_cell(design_space: DesignSpace, genotype: space.Genotype) -> bool:
  """Whether ``genotype`` meets ``design_space``'s constraint (the budgets)."""
  if not _restricted(design_space):
    return True
  return bool(design_space.feasible(np.array([genotype.to_vector()], float))[0])


def sample_cell(design_space: DesignSpace, rng: np.random.Generator) -> space.Genotype:
  """A uniform cell; uniform over the feasible cells of a restricted space."""
  if not _restricted(design_space):
    return space.sample(rng)
  return space.Genotype.from_vector(
      np.rint(design_space.sample(rng, 1)[0]).astype(int).tolist())


def new_cell(design_space: DesignSpace, genotype: space.Genotype, rng: np.random.Generator,
             taken: Callable[[str], bool]) -> space.Genotype:
  """``genotype``, or its mutation, until its canonical key is not ``taken``
  and it is feasible; ``RuntimeError`` after 1000 mutations."""
  for _ in range(1000):
    if not taken(genotype.key()) and feasible_cell(design_space, genotype):
      return genotype
    genotype = space.mutate(genotype, rng)
  raise RuntimeError("Could not find a genotype not yet in the store%s after 1000 mutations."
                     % (" within the budget (%s)" % design_space.constraint_description
                        if _restricted(design_space) else ""))
