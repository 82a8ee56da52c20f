"""Model definitions for tdmcmc: the SModelS protomodel (database, physics, likelihood, priors)
and toy models with exactly known posteriors."""
