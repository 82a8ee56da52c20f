"""Toy models with exactly known posteriors, for testing the trans-dimensional engine."""
