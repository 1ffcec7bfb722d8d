"""Adaptive cascades of a search's Pareto models (LEANets): stages chosen and
written (``stages``), thresholds evaluated and searched (``thresholds``), the
report (``report``) and ``python -m search.cascades.build``. The run-time
cascade itself runs on the device (``deploy.device.cascade_runner``).
"""
