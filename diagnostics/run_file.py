"""Reading a run file and the conventions the diagnostics rely on.

A run is an ``xarray.DataTree`` (ArviZ conventions) with a ``posterior`` group holding an ``active``
indicator of dims (chain, draw, <slot dim>). The slot dim is whatever ``active`` has besides chain
and draw (``slot`` for toys, ``particle`` for protomodels). Slot parameters are the posterior
variables whose first non-sample dim is the slot dim (NaN where the slot is inactive); scalar
quantities are the posterior variables with dims exactly (chain, draw). The log target is
``sample_stats.lp`` when present.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from tdmcmc.errors import UserError

SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class Run:
    """The parts of a run file the diagnostics use.

    ``active`` is a bool array (chain, draw, slot); ``slot_names`` the slot coordinate as strings;
    ``slot_params`` maps a parameter name to its DataArray (chain, draw, slot, ...);
    ``scalars`` maps a name to a float array (chain, draw) (posterior scalars plus ``lp``).
    """

    tree: xr.DataTree
    slot_dim: str
    slot_names: tuple[str, ...]
    active: np.ndarray
    slot_params: dict[str, xr.DataArray]
    scalars: dict[str, np.ndarray]

    @property
    def n_chains(self) -> int:
        return self.active.shape[0]

    @property
    def n_draws(self) -> int:
        return self.active.shape[1]

    @property
    def attrs(self) -> dict:
        return dict(self.tree.attrs)


def open_run(path: str | Path) -> Run:
    """Open a run file (netCDF or zarr) and check the conventions; errors name the file and what is missing."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such run file")
    try:
        if path.is_dir():
            tree = xr.open_datatree(path, engine="zarr")
        else:
            tree = xr.open_datatree(path, engine="h5netcdf")
    except ImportError as exc:
        raise UserError(f"{path}: a zarr store needs the zarr package ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read as a netCDF/zarr DataTree ({exc})") from exc
    try:
        return from_tree(tree.load())
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from exc


def from_tree(tree: xr.DataTree) -> Run:
    """The :class:`Run` view of an in-memory DataTree (same checks as :func:`open_run`)."""
    if "posterior" not in tree.children:
        raise UserError("no 'posterior' group")
    post = tree["posterior"].dataset
    if "active" not in post:
        raise UserError("posterior group has no 'active' indicator variable")
    active_da = post["active"]
    extra = [d for d in active_da.dims if d not in SAMPLE_DIMS]
    if active_da.dims[:2] != SAMPLE_DIMS or len(extra) != 1:
        raise UserError(f"posterior.active must have dims (chain, draw, <slot>), got {active_da.dims}")
    slot_dim = extra[0]
    slot_names = tuple(
        str(s) for s in (post[slot_dim].values if slot_dim in post.coords else range(active_da.sizes[slot_dim]))
    )
    slot_params = {
        name: da
        for name, da in post.data_vars.items()
        if name != "active" and da.dims[:3] == SAMPLE_DIMS + (slot_dim,) and np.issubdtype(da.dtype, np.number)
    }
    scalars = {
        name: np.asarray(da.values, dtype=float)
        for name, da in post.data_vars.items()
        if da.dims == SAMPLE_DIMS and np.issubdtype(da.dtype, np.number)
    }
    if "sample_stats" in tree.children and "lp" in tree["sample_stats"].dataset:
        scalars["lp"] = np.asarray(tree["sample_stats"].dataset["lp"].values, dtype=float)
    return Run(tree, slot_dim, slot_names, np.asarray(active_da.values) != 0, slot_params, scalars)


def is_model_function(values: np.ndarray, model_index: np.ndarray) -> bool:
    """True if ``values`` is constant within every model (e.g. the number of particles)."""
    flat_v, flat_m = values.ravel(), model_index.ravel()
    order = np.argsort(flat_m, kind="stable")
    v, m = flat_v[order], flat_m[order]
    same_model = m[1:] == m[:-1]
    return bool(np.all(v[1:][same_model] == v[:-1][same_model]))


def parameter_elements(da: xr.DataArray, slot_dim: str, slot: int) -> list[tuple[str, np.ndarray]]:
    """(label, values (chain, draw)) for every element of a slot parameter at slot index ``slot``.

    A parameter with extra dims (e.g. branching ratios per channel) gives one element per index,
    labelled ``name[coord, …]``."""
    sub = da.isel({slot_dim: slot})
    extra = [d for d in sub.dims if d not in ("chain", "draw")]
    if not extra:
        return [(str(da.name), np.asarray(sub.values, dtype=float))]
    out = []
    for idx in itertools.product(*(range(sub.sizes[d]) for d in extra)):
        element = sub.isel(dict(zip(extra, idx)))
        coords = [str(element[d].values) if d in element.coords else str(i) for d, i in zip(extra, idx)]
        out.append((f"{da.name}[{', '.join(coords)}]", np.asarray(element.values, dtype=float)))
    return out
