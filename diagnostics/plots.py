"""Figures of a run (matplotlib, object API: no global pyplot state, safe without a display).

Each function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tdmcmc.diagnostics.brooks_giudici import brooks_giudici_path
from tdmcmc.diagnostics.run_file import Run

_CHAIN_ALPHA = 0.8
_MAX_TRACE_POINTS = 5000  # per chain; longer traces are thinned for drawing only


def _thinned(n_draws: int) -> np.ndarray:
    """Draw indices plotted in a trace: all, or every k-th so that at most _MAX_TRACE_POINTS remain."""
    return np.arange(0, n_draws, -(-n_draws // _MAX_TRACE_POINTS))


def _draw_label(n_draws: int) -> str:
    step = -(-n_draws // _MAX_TRACE_POINTS)
    return "draw" if step == 1 else f"draw (every {step}th shown)"


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG and return the path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _chain_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def traces(run: Run) -> Figure:
    """Number of active slots and the log target (if present) against draw, one line per chain."""
    names = [("n_active", run.active.sum(axis=2))] + (
        [("lp (log target)", run.scalars["lp"])] if "lp" in run.scalars else []
    )
    fig = Figure(figsize=(10, 2.6 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    colors = _chain_colors(run.n_chains)
    idx = _thinned(run.n_draws)
    for ax, (label, values) in zip(axes, names):
        for c in range(run.n_chains):
            if label == "n_active":
                ax.step(
                    idx,
                    values[c, idx],
                    where="post",
                    color=colors[c],
                    alpha=_CHAIN_ALPHA,
                    lw=0.8,
                    label=f"chain {c}",
                )
            else:
                ax.plot(idx, values[c, idx], color=colors[c], alpha=_CHAIN_ALPHA, lw=0.6, label=f"chain {c}")
        ax.set_ylabel(f"number of {run.slot_dim}s" if label == "n_active" else label)
    axes[0].legend(loc="upper right", fontsize="small", ncol=min(run.n_chains, 4))
    axes[-1].set_xlabel(_draw_label(run.n_draws))
    return fig


def scalar_trace(run: Run, name: str) -> Figure:
    """Trace of one scalar quantity (e.g. ``K``) per chain, with its pooled histogram at the side."""
    values = run.scalars[name]
    fig = Figure(figsize=(10, 3), layout="constrained")
    ax, side = fig.subplots(1, 2, sharey=True, width_ratios=[4, 1])
    colors = _chain_colors(run.n_chains)
    idx = _thinned(run.n_draws)
    for c in range(run.n_chains):
        ax.plot(idx, values[c, idx], color=colors[c], alpha=_CHAIN_ALPHA, lw=0.6, label=f"chain {c}")
        side.hist(
            values[c][np.isfinite(values[c])], bins=40, orientation="horizontal", histtype="step", color=colors[c]
        )
    ax.set_xlabel(_draw_label(run.n_draws))
    ax.set_ylabel(name)
    ax.legend(loc="upper right", fontsize="small", ncol=min(run.n_chains, 4))
    side.set_xlabel("count")
    return fig


def inclusion(run: Run, frame: pd.DataFrame) -> Figure:
    """Inclusion probability per slot (bars, ±2 MCSE) with each chain's frequency as a dot."""
    n = len(frame)
    fig = Figure(figsize=(8, 0.35 * n + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)
    err = 2 * np.nan_to_num(frame["mcse"].to_numpy(dtype=float))
    p = frame["p_incl"].to_numpy(dtype=float)
    xerr = [np.minimum(err, p), np.minimum(err, 1.0 - p)]  # drawn within [0, 1]
    ax.barh(y, p, xerr=xerr, color="0.75", ecolor="k", capsize=3, label="all chains (±2 MCSE)")
    colors = _chain_colors(run.n_chains)
    per_chain = run.active.mean(axis=1)  # (chain, slot)
    for c in range(run.n_chains):
        ax.plot(per_chain[c], y, "o", ms=4, color=colors[c], alpha=_CHAIN_ALPHA, label=f"chain {c}")
    ax.set_yticks(y, frame[run.slot_dim])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("inclusion probability")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def parameter_posteriors(run: Run, name: str, max_panels: int = 24) -> Figure:
    """Histogram of a slot parameter given its slot is active, one panel per slot ever active.

    Pooled draws filled; each chain as a step outline; median (line) and 68 % interval (band).
    Only for parameters with one value per slot (dims chain, draw, slot)."""
    da = run.slot_params[name]
    if da.ndim != 3:
        raise ValueError(f"{name} has dims {da.dims}; one value per {run.slot_dim} is needed for this plot")
    slots = [i for i in range(len(run.slot_names)) if run.active[:, :, i].any()][:max_panels]
    ncol = min(4, max(1, len(slots)))
    nrow = max(1, -(-len(slots) // ncol))
    fig = Figure(figsize=(3.2 * ncol, 2.5 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    colors = _chain_colors(run.n_chains)
    units = da.attrs.get("units", "")
    for ax, i in zip(axes, slots):
        values = np.asarray(da.isel({run.slot_dim: i}).values, dtype=float)
        act = run.active[:, :, i] & np.isfinite(values)
        pooled = values[act]
        bins = np.histogram_bin_edges(pooled, bins=30)
        ax.hist(pooled, bins=bins, density=True, color="0.8")
        for c in range(run.n_chains):
            if act[c].sum() > 1:
                ax.hist(
                    values[c][act[c]], bins=bins, density=True, histtype="step", color=colors[c], alpha=_CHAIN_ALPHA
                )
        q16, med, q84 = np.quantile(pooled, [0.16, 0.5, 0.84])
        ax.axvspan(q16, q84, color="C0", alpha=0.15)
        ax.axvline(med, color="C0")
        ax.set_title(f"{run.slot_names[i]}  (p = {run.active[:, :, i].mean():.2f})", fontsize="medium")
        ax.set_xlabel(f"{name} [{units}]" if units else name)
        ax.set_yticks([])
    for ax in axes[len(slots) :]:
        ax.set_visible(False)
    return fig


def model_probabilities(frame: pd.DataFrame, max_rows: int = 20) -> Figure:
    """Most probable models: frequency (bar) with the Heck et al. 95 % interval (black) and ±2 MCSE (grey)."""
    f = frame.head(max_rows)
    n = len(f)
    fig = Figure(figsize=(8, 0.35 * n + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)
    p = f["p"].to_numpy(dtype=float)
    two_mcse = 2 * np.nan_to_num(f["mcse"].to_numpy(dtype=float))
    ax.barh(y, p, color="0.75", label="visit frequency")
    lo, hi = f["heck_2.5%"].to_numpy(dtype=float), f["heck_97.5%"].to_numpy(dtype=float)
    ax.errorbar(
        f["heck_mean"],
        y - 0.15,
        xerr=[f["heck_mean"] - lo, hi - f["heck_mean"]],
        fmt="o",
        ms=3,
        color="k",
        capsize=3,
        label="Heck et al. 95 % interval",
    )
    ax.errorbar(
        p,
        y + 0.15,
        xerr=[np.minimum(two_mcse, p), two_mcse],  # a probability is not drawn below 0
        fmt="none",
        ecolor="C3",
        capsize=3,
        label="±2 MCSE (indicator)",
    )
    ax.set_yticks(y, f["model"])
    ax.invert_yaxis()
    ax.set_xlabel("posterior model probability")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def brooks_giudici(theta: np.ndarray, model_index: np.ndarray, name: str) -> Figure:
    """Brooks–Giudici components over the run: V̂ with W_c, and W_m with W_mW_c (should meet and settle)."""
    path = brooks_giudici_path(theta, model_index)
    fig = Figure(figsize=(10, 3), layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True)
    left.plot(path["draw"], path["V"], "-o", ms=3, label="V̂ (total)")
    left.plot(path["draw"], path["W_c"], "-s", ms=3, label="W_c (within chains)")
    right.plot(path["draw"], path["W_m"], "-o", ms=3, label="W_m (within models)")
    right.plot(path["draw"], path["W_mW_c"], "-s", ms=3, label="W_mW_c (within chain and model)")
    for ax in (left, right):
        ax.set_xlabel("draws used (from the start)")
        ax.set_ylabel(f"variance of {name}")
        ax.legend(fontsize="small")
    fig.suptitle(f"Brooks–Giudici variance components of {name}")
    return fig
