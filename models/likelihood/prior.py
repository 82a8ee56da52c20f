"""The paper's prior π_paper ("expo1", method reference §6.4) and K = Z² + 2 ln π.

    ln π = −( n_particles/2 + n_BR/4 + n_SSM/8 )

* n_particles: unfrozen states **including** the LSP.
* n_BR = Σ over unfrozen non-LSP particles of (number of distinct BRs > 1e-5) − 1. Distinct is a
  greedy clustering in channel order: a BR joins the first kept value b with |a − b|/(a + b) < 0.025.
  A particle whose BRs are all ≤ 1e-5 contributes −1 (a quirk of the original code, kept).
* n_SSM = n_clusters + 0.1·(n_counted − n_clusters) over the *counted* κ: both particles unfrozen,
  κ > 1e-4 and the pair's cross section (κ applied) ≥ 0.001 fb. Clusters: ``"bins"`` = distinct
  int(100 κ) (the code of the production runs, 2020-11-09, which made the paper's numbers) or
  ``"relative"`` = greedy, κ joins the first representative k with 2|κ − k|/(κ + k) < 0.03 (tag
  ``arXiv2012.12246`` and [HEAD]).

The functions work on padded arrays with any leading batch axes and on numpy or PyTensor input
(``xp`` backend): the counts are piecewise constant, so the PyTensor gradient is zero almost
everywhere and undefined on the jumps. π is not normalised; in the ``paper`` target it multiplies
a proper reference measure (DESIGN §6). [HEAD]-only penalty factors (missing ATLAS/CMS, extreme κ,
lepton-flavour democracy) are not part of expo1 and are not included.

:func:`branching_count`, :func:`ssm_count` and :func:`is_counted_ssm` are the same rules for one
particle / one model, compiled (numba) for the batched prior of the ``paper`` target: the same
comparisons and float operations in the same order, so the counts and ln π are bit for bit those of
the array functions (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numba
import numpy as np

from tdmcmc.models.likelihood.backend import backend_of

LSP = 1000022
BR_MIN = 1e-5
BR_REL_TOL = 0.025           # |a − b| / (a + b)
SSM_REL_TOL = 0.03           # 2 |a − b| / (a + b)
SSM_MIN_KAPPA = 1e-4
SSM_MIN_XSEC_FB = 1e-3
CLUSTERINGS = ("bins", "relative")


def log_prior_expo1(n_particles, n_br, n_ssm):
    """ln π = −(n_particles/2 + n_BR/4 + n_SSM/8) (numbers or arrays of either backend)."""
    return -(0.5 * n_particles + 0.25 * n_br + 0.125 * n_ssm)


def k_statistic(z, log_prior):
    """The paper's test statistic K = Z² + 2 ln π (Z = √(2 max_c ln R_c(μ̂)))."""
    return z * z + 2.0 * log_prior


def _static_len(x, xp) -> int:
    n = x.shape[-1] if xp.name == "numpy" else x.type.shape[-1]
    if n is None:
        raise ValueError("the clustered (last) axis needs a static length in PyTensor")
    return int(n)


def _greedy_clusters(values, valid, half_rel_tol: float, xp):
    """Greedy clustering along the last axis: 0/1 flags of the values that open a new cluster.

    Value k opens a cluster iff it is valid and no earlier cluster opener j has
    |v_k − v_j| < half_rel_tol·(v_k + v_j). The loop runs over the (short) last axis, against the
    pairwise closeness computed once.
    """
    n = _static_len(values, xp)
    if not n:
        return xp.zeros_like(values)
    close = (xp.abs(values[..., :, None] - values[..., None, :])
             < half_rel_tol * (values[..., :, None] + values[..., None, :])) * 1.0      # [..., k, j]
    openers = [valid[..., 0] * 1.0]
    for k in range(1, n):
        taken = xp.sum(xp.stack(openers, axis=-1) * close[..., k, :k], axis=-1)
        openers.append(valid[..., k] * (taken < 0.5))
    return xp.stack(openers, axis=-1)


@functools.cache
def _earlier(n: int) -> np.ndarray:
    """(n, n) 0/1: [k, j] = 1 if j < k (read-only, shared)."""
    out = np.tril(np.ones((n, n)), -1)
    out.flags.writeable = False
    return out


def n_branchings(brs, active):
    """n_BR from BRs (..., n_particles, n_channels) of the non-LSP particles, `active` (..., n_particles).

    Closed or absent channels carry BR 0; they are below 1e-5 and never counted.
    """
    xp = backend_of(brs, active)
    brs = xp.asarray(brs)
    valid = (brs > BR_MIN) * 1.0
    distinct = xp.sum(_greedy_clusters(brs, valid, BR_REL_TOL, xp), axis=-1)
    return xp.sum(xp.where(xp.asarray(active) > 0, distinct - 1.0, 0.0), axis=-1)


def counted_ssms(kappa, xsec_fb, pair_active):
    """0/1 mask of the κ that enter n_SSM: pair unfrozen, κ > 1e-4, σ (κ applied) ≥ 0.001 fb."""
    xp = backend_of(kappa, xsec_fb, pair_active)
    return ((xp.asarray(pair_active) > 0) * (xp.asarray(kappa) > SSM_MIN_KAPPA)
            * (xp.asarray(xsec_fb) >= SSM_MIN_XSEC_FB)) * 1.0


def n_ssm(kappa, counted, clustering: str = "bins"):
    """n_SSM = n_clusters + 0.1·(n_counted − n_clusters) from κ (..., n_pairs) and a 0/1 mask."""
    xp = backend_of(kappa, counted)
    kappa, counted = xp.asarray(kappa), xp.asarray(counted)
    if clustering == "bins":
        bins = xp.floor(100.0 * kappa)
        n = _static_len(kappa, xp)
        earlier = _earlier(n)                           # earlier[k, j] = 1 if j < k
        same_bin = xp.abs(bins[..., :, None] - bins[..., None, :]) < 0.5
        dup = xp.sum(earlier * counted[..., None, :] * same_bin, axis=-1) > 0
        openers = counted * (1.0 - dup)
    elif clustering == "relative":
        openers = _greedy_clusters(kappa, counted, SSM_REL_TOL / 2.0, xp)
    else:
        raise ValueError(f"clustering: expected one of {CLUSTERINGS}, got {clustering!r}")
    n_clusters = xp.sum(openers, axis=-1)
    return n_clusters + 0.1 * (xp.sum(counted, axis=-1) - n_clusters)


def paper_log_prior(masses: Mapping[int, float], decays: Mapping[int, Mapping[tuple, float]],
                    ssmultipliers: Mapping[tuple[int, int], float],
                    xsecs_fb: Mapping[tuple[int, int], float], *, clustering: str = "bins",
                    lsp: int = LSP) -> tuple[float, dict[str, float]]:
    """ln π_paper of one protomodel in the paper's dict form, and its counts.

    `masses` {pid: GeV} (present = unfrozen, |m| < 1e5), `decays` {pid: {daughters: BR}},
    `ssmultipliers` {(signed pid a, b): κ} in the model's order, `xsecs_fb` {(a, b): σ in fb with κ
    applied} — pass the value SModelS lists last for the pair (13 TeV); pairs without a cross
    section may be omitted (they are not counted).
    """
    alive = {p for p, m in masses.items() if abs(m) < 1e5}
    others = sorted(p for p in alive if p != lsp)
    width = max([len(decays.get(p, {})) for p in others] + [1])
    brs = np.zeros((len(others), width))
    for i, p in enumerate(others):
        vals = list(decays.get(p, {}).values())
        brs[i, :len(vals)] = vals
    n_br = float(n_branchings(brs, np.ones(len(others)))) if others else 0.0
    keys = list(ssmultipliers)
    kappa = np.array([ssmultipliers[k] for k in keys], float)
    active = np.array([abs(a) in alive and abs(b) in alive for a, b in keys], float)
    xsec = np.array([xsecs_fb.get(k, xsecs_fb.get(k[::-1], 0.0)) for k in keys], float)
    counted = counted_ssms(kappa, xsec, active)
    nssm = float(n_ssm(kappa, counted, clustering)) if keys else 0.0
    counts = {"n_particles": float(len(alive)), "n_br": n_br, "n_ssm": nssm}
    return float(log_prior_expo1(counts["n_particles"], n_br, nssm)), counts


@numba.njit(cache=True)
def _n_openers(values: np.ndarray, valid: np.ndarray, half_rel_tol: float) -> int:
    """Number of cluster openers of :func:`_greedy_clusters` along one 1-D array (compiled)."""
    opener = np.zeros(len(values), np.bool_)
    for k in range(len(values)):
        if valid[k]:
            opener[k] = True
            for j in range(k):
                if opener[j] and abs(values[k] - values[j]) < half_rel_tol * (values[k] + values[j]):
                    opener[k] = False
                    break
    return opener.sum()


@numba.njit(cache=True)
def branching_count(brs: np.ndarray) -> float:
    """One unfrozen non-LSP particle's term of n_BR from its BRs (1-D, channel order): the distinct
    BRs > 1e-5 minus one (compiled :func:`n_branchings`)."""
    return _n_openers(brs, brs > BR_MIN, BR_REL_TOL) - 1.0


@numba.njit(cache=True)
def is_counted_ssm(pair_active: bool, kappa: float, xsec_fb: float) -> bool:
    """Whether one κ enters n_SSM (compiled :func:`counted_ssms`)."""
    return pair_active and kappa > SSM_MIN_KAPPA and xsec_fb >= SSM_MIN_XSEC_FB


@numba.njit(cache=True)
def ssm_count(kappa: np.ndarray, counted: np.ndarray, bins: bool) -> float:
    """n_SSM of one model from its κ (1-D) and counted flags (compiled :func:`n_ssm`; `bins`: the
    ``"bins"`` clustering, else ``"relative"``)."""
    if bins:
        n_clusters = 0
        for k in range(len(kappa)):
            if counted[k]:
                dup = False
                for j in range(k):
                    if counted[j] and abs(np.floor(100.0 * kappa[k]) - np.floor(100.0 * kappa[j])) < 0.5:
                        dup = True
                        break
                n_clusters += not dup
    else:
        n_clusters = _n_openers(kappa, counted, SSM_REL_TOL / 2.0)
    n, n_counted = float(n_clusters), float(counted.sum())
    return n + 0.1 * (n_counted - n)
