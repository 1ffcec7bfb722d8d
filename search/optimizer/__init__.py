"""The optimizer library of tea-keras, usable on its own (no TensorFlow import).

Multi-objective Bayesian optimization over mixed categorical/continuous design
spaces, all objectives minimized:

* ``design``: design spaces (categorical, continuous), encodings, sampling,
  mutation, neighbourhoods; the TEA-DNN cell is ``search.cellspace.cell_space()``.
* ``gp``, ``random_features``: GPs with slice-sampled hyperparameters and
  random-feature posterior samples.
* ``ep``, ``pareto_sampling``, ``pesmo``, ``trust_region``: the PESMO acquisition
  (Hernandez-Lobato et al., ICML 2016) and its maximization.
* ``base``, ``random_search``, ``parego``, ``botorch_strategy``, ``strategies``:
  the ``Strategy`` interface, the baselines, BoTorch's qLogNEHVI (the optional
  ``bench`` extra, imported lazily) and the registry ``make_strategy``.
* ``objective_groups``, ``decoupled``, ``hvkg``, ``lowrank``: decoupled
  evaluations (one group of objectives measured per evaluation, e.g. error or
  time+energy, the acquisition per unit cost; ``make_decoupled_strategy``:
  decoupled PESMO, and BoTorch's hypervolume knowledge gradient on a finite
  set, the optional ``bench`` extra) and the low-rank GP for objectives
  observed thousands of times.
* ``pareto``: non-dominated sorting, hypervolume, reference points.

Its test problems, tables, ``python -m search.benchmarks.benchmark`` and the
BoTorch anchors live in ``search.benchmarks``; the TEA-DNN cell encoding in
``search.cellspace``.

The NAS application (``search.run``, the loop, trials, the store, executors,
reports) uses this package; this package imports nothing else of the project
(checked by the import-linter contracts in ``.importlinter``).
"""
