"""tdmcmc: reversible-jump MCMC over trans-dimensional model spaces.

The top-level package is the generic engine and the command line; it knows no physics.
Physics and toy models live in :mod:`tdmcmc.models`, diagnostics in :mod:`tdmcmc.diagnostics`.
"""

__version__ = "0.1.0.dev0"
