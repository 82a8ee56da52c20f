"""Transition kernels of the engine, one module per move family; see :mod:`tdmcmc.moves.base`."""
