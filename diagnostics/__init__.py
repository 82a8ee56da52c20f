"""Diagnostics, summaries, plots and reports for trans-dimensional chains.

Works on any run file with a ``posterior`` group holding an ``active`` indicator (chain, draw, <slot>)
(see :mod:`.run_file`). Entry points::

    run = open_run("RUN.nc")
    dx = diagnose(run)             # R-hat/ESS/MCSE, conditional diagnostics, model probabilities,
    dx.warnings, dx.to_dict()      # Brooks–Giudici; plain-word warnings; JSON-ready dict
    summary_tables(run)            # pandas tables
    write_report(run, "DIR")       # DIR/index.html + PNG figures
"""

# Lazy exports: ``tdmcmc --help`` imports this package (for the CLI registrar) and must not pay for
# arviz and matplotlib.
_EXPORTS = {
    "Thresholds": "convergence",
    "Diagnosis": "diagnose",
    "diagnose": "diagnose",
    "write_report": "report",
    "Run": "run_file",
    "from_tree": "run_file",
    "open_run": "run_file",
    "format_summary": "summary",
    "summary_tables": "summary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
