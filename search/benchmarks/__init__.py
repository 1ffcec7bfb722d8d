"""Benchmarks of the optimizer library: test problems (``problems``), tabular
problems (``table``), ``python -m search.benchmarks.benchmark`` and the
BoTorch anchors (``python -m search.benchmarks.anchors``).

They use ``search.optimizer`` and the cell encoding (``search.cellspace``);
the optimizer never imports them.
"""
