"""A measured per-layer cost table: the device's latency as the search's cost.

Risso et al. 2022 use MACs as the energy proxy of the search's cost term.
Here the cost can be the target's own: each prunable layer of the seed
(``tea_keras.dnas.graph.LayerSpec``: a convolution, depthwise, separable or
dense layer) is built alone, as a one-layer Keras model with its input shape
and configuration, at a grid of input and output channel counts (fractions
``FRACTIONS`` of the seed's), exported through ``deploy`` and measured on
the target with the project's protocol (``deploy.measure``, warm-up,
repeats, the median). The table holds the time per image of every layer at
every grid point; between grid points it is interpolated bilinearly in
``(c_in, c_out)`` (a depthwise layer in ``c_in`` alone), so

    T(theta) = sum_layers  bilinear_l(c_in(theta), c_out(theta))

is a ``CostModel`` (``tea_keras.dnas.complexity``): differentiable in the
alive-channel counts, hence in the masks through their straight-through
gradient. Batch norm, activations and pooling are not measured apart (a
runtime fuses them into the convolution); the table's sum therefore
predicts the network's time up to a per-network constant (the input, the
transposes, the classifier's glue), which does not move the search.

Energy: where the target reads a power source the same measurement gives
each layer's energy per image, and ``EnergyTable`` is the same
interpolation over it.

Failure modes: a one-layer model of a few microseconds is dominated by the
runtime's call overhead; each layer is therefore measured on a batch of
``measure_images`` images and the per-image time reported; and the
interpolation is exact only at the grid points (the error between them is
the layer's deviation from bilinearity, small for convolutions, which are
bilinear in ``c_in c_out``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from tea_keras import errors

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def grid_counts(full: int, fractions: Sequence[float] = FRACTIONS) -> List[int]:
  """Distinct channel counts ``max(1, round(f * full))``, ascending."""
  return sorted({max(1, int(round(f * full))) for f in fractions})


def layer_model(spec: Any, layer: Any, c_in: int, c_out: int) -> Any:
  """A one-layer functional model of ``layer``'s class and configuration with
  ``c_in`` input channels and ``c_out`` outputs (``spec``: its LayerSpec)."""
  import keras  # pylint: disable=g-import-not-at-top  (heavy)
  config = layer.get_config()
  config["name"] = "layer"
  if spec.kind in ("conv", "separable"):
    config["filters"] = int(c_out)
  elif spec.kind == "dense":
    config["units"] = int(c_out)
  config.pop("kernel_regularizer", None)
  shape = tuple(layer.input.shape[1:-1]) + (int(c_in),)
  if spec.kind == "dense" and len(shape) == 1:
    # The protocol measures NHWC inputs: a dense layer reads a 1x1 "image"
    # of its features through a Flatten (free in every runtime).
    inputs = keras.Input(shape=(1, 1, int(c_in)), name="images")
    return keras.Model(inputs, layer.__class__.from_config(config)(
        keras.layers.Flatten(name="features")(inputs)))
  inputs = keras.Input(shape=shape, name="images")
  return keras.Model(inputs, layer.__class__.from_config(config)(inputs))


def measure_table(seed_model: Any, specs: Sequence[Any],
                  measure_fn: Callable[[Any], Dict[str, Any]],
                  fractions: Sequence[float] = FRACTIONS,
                  log: Callable[[str], object] = print) -> Dict:
  """The table of ``specs`` (the seed's prunable layers): for each, its
  grid of ``(c_in, c_out)`` and the measured ``time_s`` (and ``energy_j``,
  or None) per image at each point. ``measure_fn(model)`` exports and
  measures a Keras model on the target, returning the protocol's result
  (``time_s``, ``energy_j``, ``images``)."""
  table: Dict[str, Any] = {"layers": {}, "fractions": list(fractions)}
  todo = [s for s in specs if s.kind in ("conv", "separable", "dense", "depthwise")]
  for i, spec in enumerate(todo, 1):
    layer = seed_model.get_layer(spec.name)
    full_in, full_out = int(layer.input.shape[-1]), spec_out(spec, layer)
    ins = grid_counts(full_in, fractions)
    outs: List[Any] = [None] if spec.kind == "depthwise" else grid_counts(full_out, fractions)
    times = np.zeros((len(ins), len(outs)))
    energies = np.full((len(ins), len(outs)), np.nan)
    for a, c_in in enumerate(ins):
      for b, c_out in enumerate(outs):
        result = measure_fn(layer_model(spec, layer, c_in, c_out))
        images = float(result["images"])
        times[a, b] = result["time_s"] / images
        if result.get("energy_j") is not None:
          energies[a, b] = result["energy_j"] / images
    table["layers"][spec.name] = {
        "kind": spec.kind, "c_in": ins, "c_out": outs, "time_s_per_image": times.tolist(),
        "energy_j_per_image": None if np.isnan(energies).any() else energies.tolist()}
    log("cost table: layer %d/%d %s measured at %d points" % (i, len(todo), spec.name,
                                                             times.size))
  return table


def spec_out(spec: Any, layer: Any) -> int:
  """The seed layer's output channels (a depthwise layer: its input's)."""
  if spec.kind == "dense":
    return int(layer.units)
  if spec.kind == "depthwise":
    return int(layer.input.shape[-1])
  return int(layer.filters)


def save(table: Dict[str, Any], path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(table, f, indent=1)
  os.replace(tmp, path)


def load(path: str) -> Dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def _segment(grid: Any, x: Any) -> tuple[Any, Any]:
  """``(i, w)``: the lower grid index and the upper point's weight of ``x``
  on ``grid`` (tensors, graph-safe; the segment is chosen without a
  gradient, the weight is linear in ``x``; beyond the grid the nearest
  segment extrapolates)."""
  # Keras: heavy, imported only when this runs.
  from keras import ops  # pylint: disable=g-import-not-at-top
  g = np.asarray(grid, "float64")
  if g.size == 1:
    return ops.convert_to_tensor(0, "int32"), ops.zeros_like(x)
  position = ops.searchsorted(ops.convert_to_tensor(g), ops.reshape(x, (1,)), side="left")
  i = ops.clip(ops.cast(ops.reshape(position, ()), "int32") - 1, 0, g.size - 2)
  lo, hi = ops.take(g, i), ops.take(g, i + 1)
  return i, (x - lo) / (hi - lo)


def _bilinear(entry: Dict[str, Any], key: str, c_in: Any, c_out: Any) -> Any:
  """The layer's interpolated value at ``(c_in, c_out)`` (module doc)."""
  # Keras: heavy, imported only when this runs.
  from keras import ops  # pylint: disable=g-import-not-at-top
  values = np.asarray(entry[key], "float64")
  rows, cols = values.shape
  flat = ops.convert_to_tensor(values.reshape(-1))
  i, u = _segment(entry["c_in"], c_in)
  i1 = ops.minimum(i + 1, rows - 1)
  if entry["c_out"] == [None]:
    return ops.take(flat, i * cols) * (1 - u) + ops.take(flat, i1 * cols) * u
  j, v = _segment(entry["c_out"], c_out)
  j1 = ops.minimum(j + 1, cols - 1)
  at = lambda r, c: ops.take(flat, r * cols + c)
  return ((1 - u) * (1 - v) * at(i, j) + u * (1 - v) * at(i1, j) +
          (1 - u) * v * at(i, j1) + u * v * at(i1, j1))


class _Table:
  """A ``CostModel`` over one column of a measured table (module doc)."""
  key = "time_s_per_image"

  def __init__(self, table: Dict[str, Any]) -> None:
    self.table = table
    missing = [name for name, entry in table["layers"].items() if entry.get(self.key) is None]
    if missing:
      raise errors.invalid_value("table",
                                 "%s for every layer (a power source that reads)" % (self.key,),
                                 shown="none for %s" % ", ".join(missing[:5]))

  def __call__(self, specs: Sequence[Any], alive: Any) -> Any:
    # Keras: heavy, imported only when this runs.
    from keras import ops  # pylint: disable=g-import-not-at-top
    terms = [_bilinear(self.table["layers"][s.name], self.key, *alive[s.name])
             for s in specs if s.name in self.table["layers"]]
    return ops.sum(ops.stack([ops.cast(t, "float64") for t in terms]))


class LatencyTable(_Table):
  """Predicted time per image (s) from the measured table."""
  key = "time_s_per_image"


class EnergyTable(_Table):
  """Predicted energy per image (J) from the measured table."""
  key = "energy_j_per_image"
