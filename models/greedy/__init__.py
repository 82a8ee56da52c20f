"""The original greedy walk of arXiv:2012.12246 (method reference §2) as a baseline: walkers,
hiscores, the ``paper`` objective protocol and the ``tdmcmc greedy`` command (docs/greedy.md)."""
