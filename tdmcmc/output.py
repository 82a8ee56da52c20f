"""Run output as an ``xarray.DataTree`` in ArviZ conventions, written to netCDF (h5netcdf).

Groups:
- ``posterior``: ``active`` int8 (chain, draw, <slot dim>), ``n_active`` (chain, draw), and the
  target's named variables (:meth:`~tdmcmc.target.Target.named_variables`); variables over the slot
  dim are NaN where the slot is inactive (ArviZ then reports NaN for their ESS/R-hat rather than
  failing; conditional-on-active diagnostics belong to ``tdmcmc.diagnostics``).
- ``sample_stats``: ``lp`` (log L + log p of the cold chain), ``log_likelihood_total``,
  ``log_prior``, ``accept_<move>`` (fraction of the sweep's attempts of that move accepted, NaN if
  none), ``swap_accept`` (chain, draw, pair) and ``temperature`` (chain, draw, level).
- ``best``: per chain the best state (largest log L) visited at any temperature level
  (:mod:`tdmcmc.best`), its named variables, the running maximum of log L per iteration and the
  cumulative CPU seconds (for best-found-against-CPU comparisons with optimisers).
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
    chains, draws = tr.active.shape[:2]
    return _state_dataset(target, tr.active.astype(bool), tr.params, tr.globals,
                          {"chain": np.arange(chains), "draw": np.arange(draws)})


def best_dataset(best, target: Target) -> xr.Dataset:
    """The ``best`` group (:class:`tdmcmc.best.BestStates`): per chain the best state seen at any
    temperature level, ``best_log_likelihood`` (chain, iteration) the running maximum of log L and
    ``cpu_seconds`` (iteration) the run's cumulative CPU time."""
    chains = len(best.log_lik)
    ds = _state_dataset(target, best.active[:, None], best.params[:, None], best.globals[:, None],
                        {"chain": np.arange(chains), "draw": np.arange(1)}).isel(draw=0, drop=True)
    iterations = np.arange(1, best.history.shape[1] + 1)
    return ds.assign(
        log_likelihood=(("chain",), best.log_lik), found_at_iteration=(("chain",), best.iteration),
        best_log_likelihood=(("chain", "iteration"), best.history),
        cpu_seconds=(("iteration",), best.cpu_seconds, {"units": "s"})).assign_coords(iteration=iterations)


def _state_dataset(target: Target, active: np.ndarray, params: np.ndarray, globals_: np.ndarray,
                   lead: dict[str, np.ndarray]) -> xr.Dataset:
    """``active``, ``n_active`` and the target's named variables of states with leading dims `lead`."""
    layout = target.layout
    shape = tuple(len(v) for v in lead.values())
    dims = tuple(lead)
    n, slots = int(np.prod(shape)), active.shape[-1]
    flat_active = active.reshape(n, slots)
    named = target.named_variables(flat_active, params.reshape((n,) + params.shape[len(shape):]),
                                   globals_.reshape((n,) + globals_.shape[len(shape):]))
    coords = dict(lead)
    coords[layout.slot_dim] = list(layout.slot_names)
    coords.update(_optional(target, "output_coords"))
    var_attrs = _optional(target, "output_attrs")
    data = {
        "active": (dims + (layout.slot_dim,), active.astype(np.int8)),
        "n_active": (dims, active.sum(axis=-1).astype(np.int64)),
    }
    for name, (var_dims, values) in named.items():
        values = np.asarray(values)
        values = values.astype(str if values.dtype == object else values.dtype)
        if var_dims and var_dims[0] == layout.slot_dim:
            mask = flat_active.reshape(flat_active.shape + (1,) * (len(var_dims) - 1))
            values = np.where(mask, values.astype(float), np.nan)
        data[name] = (dims + tuple(var_dims), values.reshape(shape + values.shape[1:]), var_attrs.get(name, {}))
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
    best = best_dataset(run.best, target).assign_attrs(attrs)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats, "best": best})
    tree.attrs.update(attrs)
    return tree


def write(tree: xr.DataTree, path: str | Path) -> None:
    """Write with the h5netcdf engine (atomic: temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tree.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)
