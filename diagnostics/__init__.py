"""Diagnostics, summaries, plots and reports for trans-dimensional chains."""
