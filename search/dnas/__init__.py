"""Differentiable search with complexity losses, as a search application.

``python -m search.dnas --flagfile=flags/dnas_quick.cfg`` sweeps size targets
and energy strengths on a seed network (``sweep``), each point a masked
supernet's search (``tea_keras.dnas``) followed by fine-tuning and the
paper's measurement on the target, with the uniform-width baseline beside
it; the cost term is MACs or a latency table measured on the target
(``cost_table``). The results directory has a search's outputs.
"""
