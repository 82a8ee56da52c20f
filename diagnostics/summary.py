"""Posterior summary tables of a run (pandas DataFrames) and their plain-text rendering.

- model probabilities: visit frequency ± indicator MCSE, and the Heck et al. (2019) 95 % interval;
- inclusion probabilities per slot ± MCSE;
- number of active slots, P(k) ± MCSE;
- slot parameters given the slot is active: median and central 68 % / 95 % intervals
  (quantiles 16/84 and 2.5/97.5 of the pooled draws where the slot is active and the value finite).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tdmcmc.diagnostics.model_probabilities import ModelTable, index_models, indicator_stats, model_table
from tdmcmc.diagnostics.run_file import Run, parameter_elements

QUANTILES = {"q2.5": 0.025, "q16": 0.16, "median": 0.5, "q84": 0.84, "q97.5": 0.975}


def model_frame(table: ModelTable) -> pd.DataFrame:
    """One row per model: label, k, p, mcse, ess, rhat, Heck mean/sd and 95 % interval."""
    frame = pd.DataFrame(table.rows).rename(columns={"label": "model", "heck_lo": "heck_2.5%", "heck_hi": "heck_97.5%"})
    frame["k"] = frame["k"].astype("Int64")  # "other" has no single k
    return frame[["model", "k", "p", "mcse", "ess", "rhat", "heck_mean", "heck_sd", "heck_2.5%", "heck_97.5%"]]


def inclusion_frame(run: Run) -> pd.DataFrame:
    """One row per slot: inclusion probability, its MCSE, indicator ESS and R-hat."""
    rows = []
    for i, name in enumerate(run.slot_names):
        s = indicator_stats(run.active[:, :, i])
        rows.append({run.slot_dim: name, "p_incl": s["mean"], "mcse": s["mcse"], "ess": s["ess"], "rhat": s["rhat"]})
    return pd.DataFrame(rows)


def size_frame(run: Run) -> pd.DataFrame:
    """P(k active slots) ± MCSE for every k seen."""
    k = run.active.sum(axis=2)
    rows = []
    for value in np.unique(k):
        s = indicator_stats(k == value)
        rows.append({"k": int(value), "p": s["mean"], "mcse": s["mcse"], "ess": s["ess"]})
    return pd.DataFrame(rows)


def parameter_frame(run: Run) -> pd.DataFrame:
    """One row per (slot, parameter element) active at least once: n draws, quantiles, units."""
    rows = []
    for i, name in enumerate(run.slot_names):
        act = run.active[:, :, i]
        for da in run.slot_params.values():
            for label, values in parameter_elements(da, run.slot_dim, i):
                x = values[act & np.isfinite(values)]
                if x.size == 0:
                    continue
                q = np.quantile(x, list(QUANTILES.values()))
                rows.append(
                    {
                        run.slot_dim: name,
                        "parameter": label,
                        "units": da.attrs.get("units", ""),
                        "p_incl": float(act.mean()),
                        "n_draws": int(x.size),
                        **dict(zip(QUANTILES, q)),
                    }
                )
    return pd.DataFrame(rows)


def sampler_frame(run: Run) -> pd.DataFrame:
    """Mean acceptance rate per move type (``accept_*``) and per tempering swap pair, per chain.

    Draws where a move was not attempted (NaN) are left out of its mean."""
    if "sample_stats" not in run.tree.children:
        return pd.DataFrame()
    stats = run.tree["sample_stats"].dataset
    rows = []
    for name, da in stats.data_vars.items():
        if not (name.startswith("accept_") or name == "swap_accept"):
            continue
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        for key, sub in da.groupby(extra[0]) if extra else [(None, da)]:
            values = np.asarray(sub.values, dtype=float).reshape(run.n_chains, -1)
            label = name if key is None else f"{name}[{key}]"
            with np.errstate(invalid="ignore"):
                rows.append(
                    {"statistic": label}
                    | {
                        f"chain {c}": float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
                        for c, v in enumerate(values)
                    }
                )
    return pd.DataFrame(rows)


def summary_tables(run: Run, max_models: int = 20) -> dict[str, pd.DataFrame]:
    """All summary tables keyed by ``models``, ``inclusion``, ``size``, ``parameters``."""
    return {
        "models": model_frame(model_table(index_models(run.active), run.slot_names, max_models=max_models)),
        "inclusion": inclusion_frame(run),
        "size": size_frame(run),
        "parameters": parameter_frame(run),
    }


def format_summary(run: Run, tables: dict[str, pd.DataFrame]) -> str:
    """The tables as plain text for the terminal."""
    titles = {
        "models": "Posterior model probabilities "
        "(p ± mcse from indicator chains; heck_*: Heck et al. 2019 Markov-model posterior)",
        "inclusion": f"Inclusion probabilities per {run.slot_dim}",
        "size": f"Number of active {run.slot_dim}s",
        "parameters": f"Parameters given the {run.slot_dim} is present (median, 68 % and 95 % central intervals)",
    }
    head = f"{run.n_chains} chains × {run.n_draws} draws, {len(run.slot_names)} {run.slot_dim}s"
    parts = [head]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        for key, title in titles.items():
            parts += ["", title, tables[key].to_string(index=False) if len(tables[key]) else "(none)"]
    return "\n".join(parts)
