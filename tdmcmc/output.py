"""Run output as an ``xarray.DataTree`` in ArviZ conventions, written to netCDF (h5netcdf).

Groups:
- ``posterior``: ``active`` int8 (chain, draw, <slot dim>), ``n_active`` (chain, draw), and the
  target's named variables (:meth:`~tdmcmc.target.Target.named_variables`); variables over the slot
  dim are NaN where the slot is inactive (ArviZ then reports NaN for their ESS/R-hat rather than
  failing; conditional-on-active diagnostics belong to ``tdmcmc.diagnostics``).
- ``sample_stats``: ``lp`` (log L + log p of the cold chain), ``log_likelihood_total``,
  ``log_prior``, ``accept_<move>`` (fraction of the sweep's attempts of that move accepted, NaN if
  none), ``swap_accept`` (chain, draw, pair) and ``temperature`` (chain, draw, level).
- attributes: sampler settings, seed, versions, wall-clock timings (s).

Targets may also offer ``output_coords()`` (labels of their non-slot dims), ``output_attrs()``
(per-variable attributes such as units) and ``run_attributes()`` (e.g. the database identity); all
three are optional. Variables of dtype object (labels) are written as strings.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

import tdmcmc
from tdmcmc.target import Target


def posterior_dataset(tr, target: Target) -> xr.Dataset:
    """The ``posterior`` group of a trace (:class:`tdmcmc.sampler.Trace`)."""
    layout = target.layout
    chains, draws, slots = tr.active.shape
    flat = (chains * draws,)
    active = tr.active.astype(bool)
    named = target.named_variables(
        active.reshape(flat + (slots,)),
        tr.params.reshape(flat + tr.params.shape[2:]),
        tr.globals.reshape(flat + tr.globals.shape[2:]),
    )
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), layout.slot_dim: list(layout.slot_names)}
    coords.update(_optional(target, "output_coords"))
    var_attrs = _optional(target, "output_attrs")
    data = {
        "active": (("chain", "draw", layout.slot_dim), tr.active),
        "n_active": (("chain", "draw"), active.sum(axis=2).astype(np.int64)),
    }
    for name, (dims, values) in named.items():
        values = np.asarray(values)
        values = values.astype(str if values.dtype == object else values.dtype)
        values = values.reshape((chains, draws) + values.shape[1:])
        if dims and dims[0] == layout.slot_dim:
            values = np.where(active.reshape(active.shape + (1,) * (len(dims) - 1)), values.astype(float), np.nan)
        data[name] = (("chain", "draw") + tuple(dims), values, var_attrs.get(name, {}))
    return xr.Dataset(data, coords=coords)


def _optional(target: Target, method: str) -> dict:
    """The result of an optional target method (see module docstring), unwrapping PriorOnly."""
    inner = getattr(target, "inner", target)
    return dict(getattr(inner, method)()) if hasattr(inner, method) else {}


def sample_stats_dataset(tr) -> xr.Dataset:
    """The ``sample_stats`` group of a trace."""
    chains, draws = tr.log_lik.shape
    data = {
        "lp": (("chain", "draw"), tr.log_lik + tr.log_prior),
        "log_likelihood_total": (("chain", "draw"), tr.log_lik),
        "log_prior": (("chain", "draw"), tr.log_prior),
        "temperature": (("chain", "draw", "level"), np.broadcast_to(tr.temperatures, (chains,) + tr.temperatures.shape)),
    }
    for name, values in tr.accept.items():
        data[f"accept_{name}"] = (("chain", "draw"), values)
    if tr.swap_accept.shape[2]:
        data["swap_accept"] = (("chain", "draw", "pair"), tr.swap_accept)
    return xr.Dataset(data, coords={"chain": np.arange(chains), "draw": np.arange(draws)})


def run_attributes(run) -> dict[str, str | int | float]:
    """Settings, seed, versions and timings (netCDF-safe scalar attributes)."""
    return {
        "inference_library": "tdmcmc",
        "inference_library_version": tdmcmc.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "config": json.dumps(asdict(run.config)),
        "seed": run.config.seed,
        "moves": json.dumps(run.move_names),
        "tune_seconds": run.seconds["tune"],
        "sampling_seconds": run.seconds["draws"],
        "tune_cpu_seconds": run.cpu_seconds["tune"],
        "sampling_cpu_seconds": run.cpu_seconds["draws"],
        "final_temperatures": json.dumps(run.ladder.temperatures.tolist()),
    }


def to_datatree(run, target: Target) -> xr.DataTree:
    """The run as a DataTree with ``posterior`` and ``sample_stats`` groups: the draws recorded so
    far (attribute ``draws_recorded``; ``complete`` is 1 once all ``draws`` are in), so that a
    file written at a checkpoint holds every draw of an interrupted run."""
    n = int(np.clip(run.iteration - run.config.tune, 0, run.config.draws))
    trace = run.trace.first(n)
    attrs = run_attributes(run)
    attrs.update(_optional(target, "run_attributes"))
    attrs.update(draws_recorded=n, complete=int(n == run.config.draws))
    posterior = posterior_dataset(trace, target).assign_attrs(attrs)
    stats = sample_stats_dataset(trace).assign_attrs(attrs)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    tree.attrs.update(attrs)
    return tree


def write(tree: xr.DataTree, path: str | Path) -> None:
    """Write with the h5netcdf engine (atomic: temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tree.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)
