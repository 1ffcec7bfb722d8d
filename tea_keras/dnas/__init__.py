"""Differentiable channel search with complexity losses (DNAS), in Keras 3.

One supernet training turns a seed network into a narrower one: every prunable
output channel gets a trainable mask, and the loss adds the model's size and
cost, computed from the masks, to the task loss (Risso et al. 2022).

Modules (data flows top to bottom):

* ``masks``: the binarization of a mask with its straight-through gradient.
* ``graph``: the channel dependencies of a Keras functional model (which
  channels must be pruned together), the layer specs the costs read.
* ``complexity``: parameters, bytes and MACs as differentiable functions of
  the alive-channel counts; the ``CostModel`` interface a measured per-layer
  table can implement.
* ``supernet``: ``make_supernet(model)``, the masked, searchable model.
* ``losses``: the paper's loss and the hinge variant, and a ramp of their
  strength over the first epochs.
* ``export``: the found architecture as a plain Keras model.
* ``seeds``: ResNet-8 of MLPerf Tiny v0.5 and tea-keras cell networks in a
  form the wrapper accepts.

References:
  M. Risso, A. Burrello, L. Benini, E. Macii, M. Poncino, D. Jahier Pagliari,
  "Multi-Complexity-Loss DNAS for Energy-Efficient and Memory-Constrained Deep
  Neural Networks", ISLPED 2022, arXiv:2206.00302. Released code:
  github.com/eml-eda/multi-constraint-nas (``models/search_module.py``,
  ``icl_training.py``) and the PIT method of PLiNIO, github.com/eml-eda/plinio
  (``plinio/methods/pit``).
"""
