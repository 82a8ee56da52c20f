"""Synthetic chains with known answers, and DataTrees in the run-file conventions built from them.

Two-state chain with P(0→1) = a, P(1→0) = b: stationary P(1) = a/(a+b); the indicator's
autocorrelation at lag k is λ^k with λ = 1 − a − b, so its integrated autocorrelation time is
τ = 1 + 2 Σ_k λ^k = (1 + λ)/(1 − λ) = (2 − a − b)/(a + b) and ESS = N/τ
(symmetric case a = b = q: τ = (1 − q)/q).
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def two_state(a: float, b: float, shape: tuple[int, ...], draws: int, rng: np.random.Generator) -> np.ndarray:
    """Bool chains of shape ``shape + (draws,)``, started in the stationary distribution."""
    z = np.empty(shape + (draws,), dtype=bool)
    z[..., 0] = rng.random(shape) < a / (a + b)
    u = rng.random(shape + (draws,))
    for t in range(1, draws):
        prev = z[..., t - 1]
        z[..., t] = np.where(prev, u[..., t] >= b, u[..., t] < a)
    return z


def tau_two_state(a: float, b: float) -> float:
    return (2.0 - a - b) / (a + b)


def markov(
    transition: np.ndarray, stationary: np.ndarray, shape: tuple[int, ...], draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Integer chains over the states of ``transition`` (rows sum to 1), started from ``stationary``."""
    cum = np.cumsum(transition, axis=1)
    z = np.empty(shape + (draws,), dtype=int)
    z[..., 0] = np.searchsorted(np.cumsum(stationary), rng.random(shape))
    u = rng.random(shape + (draws,))
    for t in range(1, draws):
        z[..., t] = (u[..., t, None] > cum[z[..., t - 1]]).sum(axis=-1)
    return np.minimum(z, len(stationary) - 1)


def ar1(phi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) with unit variance and lag-1 autocorrelation ``phi`` (τ = (1+φ)/(1−φ))."""
    x = np.empty(n)
    e = rng.standard_normal(n) * np.sqrt(1 - phi**2)
    x[0] = rng.standard_normal()
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def run_tree(
    active: np.ndarray,
    slot_params: dict[str, np.ndarray],
    lp: np.ndarray,
    slot_dim: str = "particle",
    slot_names: list[str] | None = None,
    scalars: dict[str, np.ndarray] | None = None,
) -> xr.DataTree:
    """A run DataTree: ``active`` (chain, draw, slot) → int8; parameters NaN where inactive; ``lp`` in sample_stats."""
    chains, draws, slots = active.shape
    names = slot_names or [f"p{i}" for i in range(slots)]
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), slot_dim: names}
    data = {
        "active": (("chain", "draw", slot_dim), active.astype(np.int8)),
        "n_particles": (("chain", "draw"), active.sum(axis=2).astype(np.int64)),
    }
    for name, values in slot_params.items():
        data[name] = (
            ("chain", "draw", slot_dim),
            np.where(active, values, np.nan),
            {"units": "GeV"} if name == "mass" else {},
        )
    for name, values in (scalars or {}).items():
        data[name] = (("chain", "draw"), values)
    post = xr.Dataset(data, coords=coords)
    stats = xr.Dataset({"lp": (("chain", "draw"), lp)}, coords={"chain": coords["chain"], "draw": coords["draw"]})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def mixed_and_stuck(stuck: bool, seed: int = 7, chains: int = 4, draws: int = 2000) -> xr.DataTree:
    """Three particles switching independently (two-state chains, τ = 4, 1.5, 9), masses i.i.d. given present,
    lp = N(0,1) + 3·[p0 present] + 1·[p1 present]; with ``stuck`` chain 1 never has p0."""
    rng = np.random.default_rng(seed)
    rates = [(0.2, 0.2), (0.3, 0.5), (0.05, 0.15)]
    active = np.stack([two_state(a, b, (chains,), draws, rng) for a, b in rates], axis=-1)
    if stuck:
        active[1, :, 0] = False
    mass = 100.0 + 50.0 * np.arange(3) + 10.0 * rng.standard_normal((chains, draws, 3))
    lp = rng.standard_normal((chains, draws)) + 3.0 * active[:, :, 0] + 1.0 * active[:, :, 1]
    return run_tree(active, {"mass": mass}, lp, scalars={"K": lp + rng.standard_normal((chains, draws))})


def protomodel_like(seed: int = 3, chains: int = 2, draws: int = 600) -> xr.DataTree:
    """The protomodel layout: particles Xt, XZ1, Xd, ``mass`` [GeV], ``br`` (particle, channel), a string
    ``model`` label, and ``K`` (model-invariant) besides ``n_particles`` and ``lp``."""
    rng = np.random.default_rng(seed)
    names = ["Xt", "XZ1", "Xd"]
    active = np.stack([two_state(a, b, (chains,), draws, rng) for a, b in [(0.1, 0.02), (0.2, 0.2), (0.02, 0.1)]], -1)
    active[..., 1] = True  # the LSP is always present
    mass = np.array([900.0, 300.0, 1200.0]) + 50.0 * rng.standard_normal((chains, draws, 3))
    lp = rng.standard_normal((chains, draws)) + 2.0 * active[..., 0]
    tree = run_tree(active, {"mass": mass}, lp, slot_names=names, scalars={"K": 2 * (lp - lp.min())})
    br_first = rng.uniform(0.2, 0.8, (chains, draws, 3))
    br = np.stack([br_first, 1 - br_first], axis=-1)
    br = np.where(active[..., None], br, np.nan)
    labels = np.array([[",".join(n for n, on in zip(names, a, strict=True) if on) for a in row] for row in active])
    post = (
        tree["posterior"]
        .dataset.assign(
            br=(("chain", "draw", "particle", "channel"), br),
            model=(("chain", "draw"), labels),
        )
        .assign_coords(channel=["t X1", "b X1"])
    )
    tree["posterior"] = post
    return tree
