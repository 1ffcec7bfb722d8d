"""The TEA-DNN cell search space (Cai et al., 2018, section III-B), as data.

A cell has ``NUM_BLOCKS`` (B = 5) blocks. Block ``b`` (0-based) is a tuple
``(input1, input2, op1, op2)``: it applies ``op1`` to ``input1`` and ``op2`` to
``input2`` and adds the two results. Inputs index the hidden states the block
can see:

====== ============== ===========================================
index  string name    hidden state
====== ============== ===========================================
0      ``prev_prev``  output of the cell before the previous one
1      ``prev``       output of the previous cell
2 + j  ``b{j}``       output of block ``j`` of this cell, ``j < b``
====== ============== ===========================================

so block ``b`` has ``b + 2`` possible inputs (2, 3, 4, 5, 6 for B = 5). Note
that TF-slim's ``nasnet_utils`` numbers the two cell inputs the other way round
(its hidden state 0 is the previous cell's output). Ops are the paper's eight,
in the paper's order (``OPS``).

Cell output (``Genotype.concat``, ``CONCATS``): ``"unused"`` (the default, the
searched cells' convention, PNAS/NASNet's ``_combine_unused_states``)
concatenates every block output that no other block of the cell uses;
``"all"`` concatenates all the block outputs, as TF-slim's PNASNet-5 does
(``used_hiddenstates = [1, 1, 0, 0, 0, 0, 0]``: only the two cell inputs are
left out).

Encoding seen by the optimizer: 20 integers, block by block,
``[in1_0, in2_0, op1_0, op2_0, in1_1, ...]``; ``cardinalities()`` gives the
number of values of each position. Every encoding in that box is a valid cell,
so the number of ordered encodings is ``(2*3*4*5*6)**2 * 8**10`` (about
5.6e14, ``space_size()``).

String form (``Genotype.to_string`` / ``Genotype.parse``): blocks separated by
``;``, each block ``op1(input1)+op2(input2)``, e.g.::

    sep3x3(prev)+max3x3(prev_prev); conv3x3(b0)+identity(prev); ...

A cell that concatenates all its blocks ends its string with ``| concat=all``
(the default ``unused`` is not written, so existing strings keep their
meaning). Whitespace is ignored. This module imports no TensorFlow so that the optimizer
and the tools that only handle genotypes stay light.

The network around the cells (``network_layout``, built by
``tea_keras.network``): a stem, then ``3N + 2`` cells (N at stride 1, one at
stride 2, N, one at stride 2, N); cell ``k`` reads the outputs of cells
``k - 2`` (its ``prev_prev``) and ``k - 1`` (its ``prev``), the stem standing
in for both before cell 0; the logits read the last cell.

Dead cells. The space, like the paper's and PNAS's, contains cells whose
blocks never read ``prev`` (or never ``prev_prev``): 1 in 36 uniform
encodings each (the product of ``((b + 1) / (b + 2))**2`` over the blocks
``b``). With the same
cell in every position, a cell that never reads ``prev`` leaves the output of
cell ``k`` to cell ``k + 2`` alone, so every other cell, counted back from
the last, reaches no logit; one that never reads ``prev_prev`` leaves every
cell's projection of it unused. Such cells are neither excluded nor rewritten:

* excluding them would take cells out of the paper's space and break the
  encoding box above (every encoding a valid cell), which the optimizer's
  design space, ``sample``, ``mutate`` and ``neighbours`` rely on;
* no canonical form exists: a cell that reads ``prev`` builds every cell,
  so no rewrite reading ``prev`` builds the half-depth network of one that
  does not (and a cell that never reads ``prev_prev`` is already its own).

Instead the network is what a compiler keeps of it, as the ONNX export
does: ``live_cells`` walks ``network_layout`` back from the last cell over the
inputs the cell reads (``Genotype.inputs_read``), ``tea_keras.network``
builds only the live cells and the projections of the inputs a cell reads,
and ``tea_keras.cost`` counts the same. The network that is trained,
exported, measured, profiled and budgeted is then one network. A cell that
never reads ``prev`` thus gets a network of about half the depth (N = 1:
cells 0, 2 and 4 of 5, the downsampling done by the factorized reductions of
cells 2 and 4), which is all its export ever ran.
"""

import dataclasses
import functools
import json
import re
from typing import Iterable, List, Sequence, Tuple

import numpy as np

from tea_keras import errors

NUM_BLOCKS = 5
# The paper's eight operations, in the paper's order; an op's index in this
# tuple is its value in the encoding.
OPS = ("max3x3", "identity", "sep3x3", "conv3x3",
       "sep5x5", "conv5x5", "sep7x7", "conv7x7")
FIELDS = ("input1", "input2", "op1", "op2")
_CELL_INPUT_NAMES = ("prev_prev", "prev")
# Concatenation rules of the cell output, default first (see the module doc).
CONCATS = ("unused", "all")


def num_inputs(block_index: int) -> int:
  """Number of hidden states block ``block_index`` (0-based) may read."""
  return block_index + len(_CELL_INPUT_NAMES)


def input_name(index: int) -> str:
  """String name of input index ``index`` (``prev_prev``, ``prev``, ``b0``...)."""
  if index < len(_CELL_INPUT_NAMES):
    return _CELL_INPUT_NAMES[index]
  return "b%d" % (index - len(_CELL_INPUT_NAMES))


def cardinalities(num_blocks: int = NUM_BLOCKS) -> Tuple[int, ...]:
  """Number of allowed values of each position of the integer encoding."""
  out = []
  for b in range(num_blocks):
    out += [num_inputs(b), num_inputs(b), len(OPS), len(OPS)]
  return tuple(out)


def space_size(num_blocks: int = NUM_BLOCKS) -> int:
  """Number of distinct ordered encodings (product of the cardinalities)."""
  return int(np.prod([int(c) for c in cardinalities(num_blocks)], dtype=object))


@dataclasses.dataclass(frozen=True)
class Block:
  """One block: ``op1(input1) + op2(input2)``; ops are names from ``OPS``."""
  input1: int
  input2: int
  op1: str
  op2: str

  def fields(self) -> Tuple[int, int, int, int]:
    """The block as four integers (inputs, then op indices)."""
    return (self.input1, self.input2, OPS.index(self.op1), OPS.index(self.op2))


@dataclasses.dataclass(frozen=True)
class Genotype:
  """A cell: a tuple of ``Block`` and the output rule ``concat`` (one of
  ``CONCATS``). Construct through ``from_vector``, ``parse``, ``sample`` or
  directly, then it is validated on creation."""
  blocks: Tuple[Block, ...]
  concat: str = CONCATS[0]

  def __post_init__(self):
    object.__setattr__(self, "blocks", tuple(self.blocks))
    self.validate()

  # -- validation -----------------------------------------------------------
  def validate(self) -> None:
    """Raise ``ValueError`` naming the block and field of the first bad value."""
    if not self.blocks:
      raise ValueError("Invalid genotype: expected at least one block, received none.")
    if self.concat not in CONCATS:
      raise ValueError("Invalid genotype: field `concat` must be one of %s, received %r."
                       % (", ".join(CONCATS), self.concat))
    for b, block in enumerate(self.blocks):
      if not isinstance(block, Block):
        raise ValueError("Invalid genotype: block %d must be a Block, received %r."
                         % (b, block))
      for field in ("input1", "input2"):
        value = getattr(block, field)
        if not _is_int(value) or not 0 <= value < num_inputs(b):
          raise ValueError(
              "Invalid genotype: block %d field `%s` must be an integer in "
              "[0, %d] (%s), received %r."
              % (b, field, num_inputs(b) - 1,
                 ", ".join(input_name(i) for i in range(num_inputs(b))), value))
      for field in ("op1", "op2"):
        value = getattr(block, field)
        if value not in OPS:
          raise ValueError(
              "Invalid genotype: block %d field `%s` must be one of %s, received %r."
              % (b, field, ", ".join(OPS), value))

  # -- integer encoding -----------------------------------------------------
  def to_vector(self) -> List[int]:
    """The flat integer encoding (4 integers per block)."""
    return [int(v) for block in self.blocks for v in block.fields()]

  @classmethod
  def from_vector(cls, vector: Sequence[int], concat: str = CONCATS[0]) -> "Genotype":
    """Decode a flat integer encoding (the blocks; ``concat`` is not encoded);
    raises ``ValueError`` on bad values."""
    values = list(np.asarray(vector).ravel().tolist())
    if len(values) == 0 or len(values) % 4:
      raise ValueError("Invalid genotype vector: expected a multiple of 4 integers "
                       "(%d for %d blocks), received %d."
                       % (4 * NUM_BLOCKS, NUM_BLOCKS, len(values)))
    blocks = []
    for b in range(len(values) // 4):
      in1, in2, op1, op2 = values[4 * b:4 * b + 4]
      ops = []
      for field, value in (("op1", op1), ("op2", op2)):
        if not _is_int(value) or not 0 <= value < len(OPS):
          raise ValueError("Invalid genotype: block %d field `%s` must be an integer "
                           "in [0, %d], received %r." % (b, field, len(OPS) - 1, value))
        ops.append(OPS[int(value)])
      blocks.append(Block(_as_int(in1), _as_int(in2), ops[0], ops[1]))
    return cls(tuple(blocks), concat)

  # -- string form ----------------------------------------------------------
  def to_string(self) -> str:
    """Human-readable form, e.g. ``sep3x3(prev)+max3x3(prev_prev); ...``."""
    text = "; ".join("%s(%s)+%s(%s)" % (blk.op1, input_name(blk.input1),
                                        blk.op2, input_name(blk.input2))
                     for blk in self.blocks)
    return text if self.concat == CONCATS[0] else "%s | concat=%s" % (text, self.concat)

  __str__ = to_string

  @classmethod
  def parse(cls, text: str) -> "Genotype":
    """Parse ``to_string`` output. Errors name the block and the bad token."""
    if not isinstance(text, str) or not text.strip():
      raise ValueError("Invalid genotype string: expected blocks like "
                       "'sep3x3(prev)+max3x3(prev_prev); ...', received %r." % (text,))
    text, concat = _split_concat(text)
    blocks = []
    for b, chunk in enumerate(text.split(";")):
      chunk = re.sub(r"\s+", "", chunk)
      match = _BLOCK_RE.fullmatch(chunk)
      if not match:
        raise ValueError("Invalid genotype string: block %d %r is not of the form "
                         "'op(input)+op(input)'." % (b, chunk))
      op1, in1, op2, in2 = match.groups()
      for op in (op1, op2):
        if op not in OPS:
          raise ValueError("Invalid genotype string: block %d has unknown op %r; "
                           "expected one of %s." % (b, op, ", ".join(OPS)))
      blocks.append(Block(_parse_input(in1, b), _parse_input(in2, b), op1, op2))
    return cls(tuple(blocks), concat)

  # -- JSON -----------------------------------------------------------------
  def to_json(self) -> str:
    return json.dumps({"blocks": [dataclasses.asdict(b) for b in self.blocks],
                       "concat": self.concat})

  @classmethod
  def from_json(cls, text: str) -> "Genotype":
    data = json.loads(text)
    return cls(tuple(Block(**b) for b in data["blocks"]), data.get("concat", CONCATS[0]))

  # -- structure ------------------------------------------------------------
  def key(self) -> str:
    """Canonical key for de-duplication.

    The two branches of a block are summed, so ``(in1, op1)`` and
    ``(in2, op2)`` commute: the key sorts each block's pair. Two genotypes
    with equal keys build the same network (up to weight initialisation).
    ``concat="all"`` adds ``|all`` only where it changes the output blocks
    (some block feeds another), since otherwise both rules build one network.
    """
    parts = []
    for blk in self.blocks:
      pair = sorted([(blk.input1, OPS.index(blk.op1)), (blk.input2, OPS.index(blk.op2))])
      parts.append("%d.%d.%d.%d" % (pair[0][0], pair[0][1], pair[1][0], pair[1][1]))
    key = "-".join(parts)
    return key + "|all" if self.concat == "all" and self.used_blocks() else key

  def inputs_read(self) -> Tuple[int, ...]:
    """The cell inputs some block reads, ascending: ``0`` (``prev_prev``)
    and/or ``1`` (``prev``). Every block is live (it is an output or feeds
    one), so these are exactly the inputs the cell output depends on."""
    return tuple(sorted({i for blk in self.blocks for i in (blk.input1, blk.input2)
                         if i < len(_CELL_INPUT_NAMES)}))

  def used_blocks(self) -> Tuple[int, ...]:
    """Indices of blocks whose output feeds another block of the cell."""
    used = set()
    for blk in self.blocks:
      for i in (blk.input1, blk.input2):
        if i >= len(_CELL_INPUT_NAMES):
          used.add(i - len(_CELL_INPUT_NAMES))
    return tuple(sorted(used))

  def output_blocks(self) -> Tuple[int, ...]:
    """Indices of blocks concatenated into the cell output, ascending: the
    unused ones (``concat="unused"``) or every block (``concat="all"``)."""
    if self.concat == "all":
      return tuple(range(len(self.blocks)))
    used = set(self.used_blocks())
    return tuple(b for b in range(len(self.blocks)) if b not in used)


_BLOCK_RE = re.compile(r"([A-Za-z0-9_]+)\(([A-Za-z0-9_]+)\)\+([A-Za-z0-9_]+)\(([A-Za-z0-9_]+)\)")


def _split_concat(text: str) -> Tuple[str, str]:
  """``"blocks | concat=all"`` -> ``("blocks", "all")``; no ``|``: the default."""
  if "|" not in text:
    return text, CONCATS[0]
  blocks, _, suffix = text.partition("|")
  match = re.fullmatch(r"concat=([A-Za-z_]+)", re.sub(r"\s+", "", suffix))
  if not match or match.group(1) not in CONCATS:
    raise ValueError("Invalid genotype string: expected the suffix '| concat=RULE' with RULE "
                     "one of %s, received %r." % (", ".join(CONCATS), "|" + suffix))
  return blocks, match.group(1)


def _parse_input(token: str, block_index: int) -> int:
  allowed = [input_name(i) for i in range(num_inputs(block_index))]
  if token not in allowed:
    raise ValueError("Invalid genotype string: block %d has input %r; expected one of %s."
                     % (block_index, token, ", ".join(allowed)))
  return allowed.index(token)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_int(value):
  return int(value) if _is_int(value) else value


# -- the network around the cells --------------------------------------------
STEM = -1  # the state index of the stem's output in ``CellSlot.inputs``


@dataclasses.dataclass(frozen=True)
class CellSlot:
  """Cell ``index`` of the network: its ``stride``, its width as a multiple of
  F (doubling at each stride-2 cell), the states it reads as
  ``(prev_prev, prev)`` (``STEM`` or an earlier cell's index) and whether
  ``prev_prev`` has twice the resolution of ``prev`` (the cell right after a
  stride-2 cell), which a factorized reduction then halves."""
  index: int
  stride: int
  width: int
  inputs: Tuple[int, int]
  reduce_prev_prev: bool


def cell_strides(num_cells: int) -> List[int]:
  """Stride of every cell: N ones, a 2, N ones, a 2, N ones."""
  return [1] * num_cells + [2] + [1] * num_cells + [2] + [1] * num_cells


@functools.lru_cache(maxsize=64)
def network_layout(num_cells: int) -> Tuple[CellSlot, ...]:
  """The cells of the network with N = ``num_cells`` (see the module doc), as
  ``tea_keras.network`` wires them and ``tea_keras.cost`` counts them."""
  slots, scale, width = [], {STEM: 1}, 1
  for k, stride in enumerate(cell_strides(num_cells)):
    width *= stride
    inputs = (max(k - 2, STEM), max(k - 1, STEM))
    scale[k] = scale[inputs[1]] * stride
    slots.append(CellSlot(k, stride, width, inputs, scale[inputs[0]] != scale[inputs[1]]))
  return tuple(slots)


def live_cells(genotype: Genotype, num_cells: int) -> Tuple[bool, ...]:
  """Whether each cell's output reaches the logits, walking ``network_layout``
  back from the last cell over the inputs ``genotype`` reads."""
  return _live_cells(genotype.inputs_read(), int(num_cells))


@functools.lru_cache(maxsize=256)
def _live_cells(inputs_read, num_cells):
  layout = network_layout(num_cells)
  needed = {layout[-1].index}
  for slot in reversed(layout):
    if slot.index in needed:
      needed.update(slot.inputs[i] for i in inputs_read)
  return tuple(slot.index in needed for slot in layout)


# -- sampling and mutation --------------------------------------------------
def sample(rng, num_blocks: int = NUM_BLOCKS) -> Genotype:
  """Uniform sample over encodings. ``rng``: ``np.random.Generator`` or a seed."""
  rng = np.random.default_rng(rng)
  return Genotype.from_vector([int(rng.integers(c)) for c in cardinalities(num_blocks)])


def sample_many(rng, count: int, num_blocks: int = NUM_BLOCKS) -> List[Genotype]:
  rng = np.random.default_rng(rng)
  return [sample(rng, num_blocks) for _ in range(count)]


def mutate(genotype: Genotype, rng, field: str = None) -> Genotype:
  """Change one input or op of one block to a different valid value.

  ``field``: restrict to ``"input"`` or ``"op"`` changes (default: either).
  """
  if field not in (None, "input", "op"):
    raise errors.invalid_value("field", "None, 'input' or 'op'", field)
  rng = np.random.default_rng(rng)
  vector = genotype.to_vector()
  cards = cardinalities(len(genotype.blocks))
  positions = [p for p in range(len(vector)) if cards[p] > 1 and
               (field is None or (p % 4 < 2) == (field == "input"))]
  pos = int(rng.choice(positions))
  choices = [v for v in range(cards[pos]) if v != vector[pos]]
  vector[pos] = int(rng.choice(choices))
  return Genotype.from_vector(vector, genotype.concat)


def neighbours(genotype: Genotype) -> Iterable[Genotype]:
  """Every genotype one field away (all single-position changes)."""
  vector = genotype.to_vector()
  cards = cardinalities(len(genotype.blocks))
  for pos, card in enumerate(cards):
    for value in range(card):
      if value != vector[pos]:
        changed = list(vector)
        changed[pos] = value
        yield Genotype.from_vector(changed, genotype.concat)


# Named cells. ``pnasnet5`` is the PNASNet-5 cell (Liu et al., 2018, Fig. 1;
# TF-slim ``pnasnet.py`` ``PNasNetNormalCell``), which uses only ops of this
# space: slim's hidden state 0 (the previous cell) is our ``prev``, its state 1
# our ``prev_prev``, its ``none`` our ``identity``, and it concatenates all
# five block outputs. ``chain`` is a deep, convolution-heavy cell that feeds
# every block into the next one.
NAMED = {
    "pnasnet5": ("sep5x5(prev_prev)+max3x3(prev_prev); sep7x7(prev)+max3x3(prev); "
                 "sep5x5(prev)+sep3x3(prev); sep3x3(b2)+max3x3(prev); "
                 "sep3x3(prev_prev)+identity(prev) | concat=all"),
    "chain": ("conv3x3(prev)+identity(prev_prev); conv3x3(b0)+max3x3(prev); "
              "conv5x5(b1)+identity(b0); sep3x3(b2)+conv3x3(prev); "
              "sep7x7(b3)+max3x3(b2)"),
}


def resolve(text: str, seed: int = 0) -> Genotype:
  """A genotype from a command-line value: ``random`` (seeded), a name from
  ``NAMED``, or a string form."""
  if text == "random":
    return sample(seed)
  return Genotype.parse(NAMED.get(text, text))
