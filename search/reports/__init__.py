"""Reports over finished searches: the paper's figures and Table II
(``figures``), a search's front on another device (``cross_device``), precisions
(``precisions``), budgets (``budget``); ``python -m search.reports``.

Reports use the application (``search.loop``, ``search.trial``, the store);
the application never imports them.
"""
