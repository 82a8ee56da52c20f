"""The protomodel prior and slot parameters (models/protomodel/{parameters,prior,sampling}.py).

* the allowed particle sets and P(n), inclusion probabilities against a pure-Python enumeration;
* the structural normalisers: π(θ | γ) integrates to one (Monte Carlo over the prior's own
  coordinates, with the ordering constraint and the stop-corridor veto), gradient vs finite differences;
* the compiled log prior (pm.Model graph + numba structure kernel) against a per-state reference
  written from the module's formulas (scipy log densities, loops, permutations) to 1e-13, the same
  in a batch as one state at a time;
* parameters ↔ protomodel round trip (the paper's best model);
* prior-only sampling with the engine on the full 20-particle space: inclusion, P(n) and mass
  marginals (LSP uniform; gluino and a slepton from a scipy integral of the conditional uniform
  law) within 4 Monte-Carlo standard errors (arviz-stats mcse) + 0.005.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, special, stats

from tdmcmc.models.protomodel.parameters import SlotParameters
from tdmcmc.models.protomodel.prior import PriorSettings, ProtomodelPrior
from tdmcmc.models.protomodel.space import default_space

from tests.mcse_checks import assert_within_mcse


@pytest.fixture(scope="module")
def slots():
    return SlotParameters(default_space())


@pytest.fixture(scope="module")
def prior(slots):
    return ProtomodelPrior(slots, PriorSettings(lam=1.0))


def test_allowed_sets_and_n_particles_against_enumeration(slots, prior):
    space = slots.space
    others = [p for p in space.particles if p != space.lsp]
    counts: dict[int, int] = {}
    inclusion = dict.fromkeys(space.particles, 0.0)
    total = 0.0
    for bits in itertools.product((False, True), repeat=len(others)):
        present = {p for p, b in zip(others, bits) if b} | {space.lsp}
        if any(heavy in present and light not in present for light, heavy in space.ordering):
            continue
        counts[len(present)] = counts.get(len(present), 0) + 1
        w = np.exp(-len(present))
        total += w
        for p in present:
            inclusion[p] += w
    assert len(prior.allowed_sets()) == sum(counts.values()) == 103680
    z = sum(c * np.exp(-n) for n, c in counts.items())
    for n, p in prior.exact_n_particles().items():
        assert p == pytest.approx(counts[n] * np.exp(-n) / z, rel=1e-12)
    np.testing.assert_allclose(prior.exact_inclusion(), [inclusion[p] / total for p in slots.pdgs], rtol=1e-10)


def _states(slots, present, n, rng):
    active = np.zeros((n, slots.layout.n_slots), bool)
    active[:, [slots.slot[p] for p in present]] = True
    params = rng.normal(size=(n, slots.layout.n_slots, slots.layout.max_dim))
    return active, params


@pytest.mark.parametrize("present", [(1000022, 1000006, 2000006), (1000022, 1000001, 1000002, 1000003, 1000021)])
def test_mass_density_integrates_to_one(slots, prior, present):
    """E_q[π(θ|γ)/q(θ)] = 1 with q the logistic law of every mass entry (the prior's coordinates
    without the structure): checks the veto and ordering normalisers (stops: veto + t1 < t2;
    squarks: d < u, d < s, 2 of 3! orders). 200,000 draws: standard error ≈ 0.005."""
    rng = np.random.default_rng(4)
    active, params = _states(slots, present, 200_000, rng)
    u = rng.uniform(size=params.shape[:2])
    params[:, :, 0] = np.log(u) - np.log1p(-u)
    structural, _ = prior.structural(active, params)
    log_gamma = -len(present) - prior.log_norm_gamma
    ratio = np.exp(np.where(np.isfinite(structural), structural - log_gamma, -np.inf))
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert (ratio == 0).mean() > 0.3          # the constraints do cut (ordering alone: ≥ 1/2)


def test_log_prior_gradient_against_finite_differences(slots, prior):
    rng = np.random.default_rng(5)
    active, params = _states(slots, (1000022, 1000006, 2000006, 1000021, 1000024), 3, rng)
    params[:, slots.lsp_slot, 0] = -3.0                       # m_LSP ≈ 120 GeV: the stop veto is live
    params[:, slots.slot[1000006], 0] = -1.0
    params[:, slots.slot[2000006], 0] = 2.0
    glob = rng.normal(size=(3, 1))
    value, grad, grad_g = prior.log_prior(active, params, glob)
    assert np.all(np.isfinite(value))
    mask = active[:, :, None] & slots.layout.param_mask[None]
    h = 1e-6
    for b, j, d in zip(*np.nonzero(mask)):
        up, down = params.copy(), params.copy()
        up[b, j, d] += h
        down[b, j, d] -= h
        fd = (prior.log_prior(active, up, glob)[0][b] - prior.log_prior(active, down, glob)[0][b]) / (2 * h)
        assert grad[b, j, d] == pytest.approx(fd, abs=1e-6), (slots.layout.slot_names[j], d)
    fd = (prior.log_prior(active, params, glob + h)[0] - prior.log_prior(active, params, glob - h)[0]) / (2 * h)
    np.testing.assert_allclose(grad_g[:, 0], fd, atol=1e-6)


def _reference_structural(slots, prior, active, z_mass) -> float:
    """log π(γ) + the mass-structure terms of one state from the formulas of the prior's module
    docstring, by loops: −∞ outside the support."""
    space, lo, hi, lsp = slots.space, slots.mass_lo, slots.mass_hi, slots.lsp_slot
    f = special.expit(z_mass)
    m_lsp = lo[lsp] + (hi[lsp] - lo[lsp]) * f[lsp]
    on = {j for j in range(len(active)) if active[j]}
    pairs = [(slots.slot[a], slots.slot[b]) for a, b in space.ordering]
    if lsp not in on or any(b in on and a not in on for a, b in pairs):
        return -math.inf
    low = np.maximum(lo, m_lsp)
    mass = low + (hi - low) * f
    if any(a in on and b in on and mass[b] <= mass[a] for a, b in pairs):
        return -math.inf
    value = -prior.settings.lam * len(on) - prior.log_norm_gamma
    for j in on - {lsp}:
        length = hi[j] - low[j]
        for v in space.vetoes:
            if slots.pdgs[j] in v.particles:
                if mass[j] < v.max_mass and v.min_gap < mass[j] - m_lsp < v.max_gap:
                    return -math.inf
                cut = min(m_lsp + v.max_gap, v.max_mass, hi[j]) - max(m_lsp + v.min_gap, low[j])
                length -= max(cut, 0.0)
        value += math.log(hi[j] - low[j]) - math.log(length)
    component = {j: j for a, b in pairs for j in (a, b)}
    for a, b in pairs:                       # connected components of the ordering graph
        old, new = component[b], component[a]
        component = {j: new if c == old else c for j, c in component.items()}
    for c in set(component.values()):
        present = [j for j, cj in component.items() if cj == c and j in on]
        ext = sum(all(order.index(a) < order.index(b) for a, b in pairs if a in present and b in present)
                  for order in itertools.permutations(present))
        value += math.log(math.factorial(len(present)) / ext)
    return value


def _reference_continuous(slots, settings, active, params, mu_z) -> tuple[float, np.ndarray, float]:
    """The continuous prior of one state with its gradient (closed forms, scipy): logistic density
    of every active slot's mass entry and of the μ fraction (Uniform(0, 1) in logit coordinates),
    N(0, σ_κ²) on the κ entries 1 .. logit_start − 1 and N(0, σ_logit²) on the rest of the slot's
    used entries."""
    value = special.log_expit(mu_z) + special.log_expit(-mu_z)
    grad = np.zeros_like(params)
    for j in np.flatnonzero(active):
        z = params[j, 0]
        value += special.log_expit(z) + special.log_expit(-z)
        grad[j, 0] = 1.0 - 2.0 * special.expit(z)
        for d in range(1, slots.layout.slot_dims[j]):
            sd = settings.log_kappa_sd if d < slots.logit_start[j] else settings.logit_sd
            value += stats.norm.logpdf(params[j, d], 0.0, sd)
            grad[j, d] = -params[j, d] / sd**2
    return value, grad, 1.0 - 2.0 * special.expit(mu_z)


@pytest.mark.parametrize("settings", [PriorSettings(), PriorSettings(lam=0.0, logit_sd=1.3, log_kappa_sd=0.7)])
def test_log_prior_against_reference(slots, settings):
    """300 states: allowed sets, arbitrary sets (mostly outside the support), a light LSP, stops in
    and around the stop corridor (veto live: cut support, vetoed masses), entries up to ~20 in size. Values and the continuous gradient to 1e-13 relative
    (summation order only); the LSP entry's structural derivative to central differences of the
    reference (h = 1e-6: error ~1e-9)."""
    prior = ProtomodelPrior(slots, settings)
    rng = np.random.default_rng(8)
    n = 300
    sets = prior.allowed_sets()
    active = sets[rng.integers(len(sets), size=n)]
    active[:60] = rng.uniform(size=(60, active.shape[1])) < 0.5
    params = rng.normal(size=(n, slots.layout.n_slots, slots.layout.max_dim)) * rng.choice([0.5, 2.0, 6.0], size=(n, 1, 1))
    params[60:150, slots.lsp_slot, 0] = rng.uniform(-5.0, -1.0, size=90)
    stops = [slots.slot[1000006], slots.slot[2000006]]
    active[150:220, stops[0]] = True                         # t1, maybe t2, in and around the corridor
    active[150:220, stops[1]] = rng.uniform(size=70) < 0.5
    params[150:220, slots.lsp_slot, 0] = rng.uniform(-5.0, -3.0, size=70)     # m_LSP ≈ 26-122 GeV
    params[150:220][:, stops, 0] = rng.uniform(-4.5, -1.5, size=(70, 2))      # m_t̃ ≈ 120-500 GeV
    glob = rng.normal(size=(n, 1)) * 3.0
    value, grad, grad_g = prior.log_prior(active, params, glob)
    lsp, h = slots.lsp_slot, 1e-6
    assert 50 < np.isfinite(value).sum() < n - 50
    for b in range(n):
        structural = _reference_structural(slots, prior, active[b], params[b, :, 0])
        continuous, g_ref, g_mu = _reference_continuous(slots, settings, active[b], params[b], glob[b, 0])
        if structural == -math.inf:
            assert value[b] == -np.inf, b
            continue
        assert abs(value[b] - (continuous + structural)) <= 1e-13 * max(abs(value[b]), 1.0), b
        up, down = params[b, :, 0].copy(), params[b, :, 0].copy()
        up[lsp] += h
        down[lsp] -= h
        g_ref[lsp, 0] += (_reference_structural(slots, prior, active[b], up)
                          - _reference_structural(slots, prior, active[b], down)) / (2 * h)
        np.testing.assert_allclose(np.delete(grad[b].ravel(), lsp * slots.layout.max_dim),
                                   np.delete(g_ref.ravel(), lsp * slots.layout.max_dim), rtol=1e-13, atol=0)
        assert grad[b, lsp, 0] == pytest.approx(g_ref[lsp, 0], abs=1e-6)
        assert grad_g[b, 0] == pytest.approx(g_mu, rel=1e-13)
    one = [prior.log_prior(active[b:b + 1], params[b:b + 1], glob[b:b + 1]) for b in range(0, n, 7)]
    assert np.array_equal(np.concatenate([o[0] for o in one]), value[::7])
    assert np.array_equal(np.concatenate([o[1] for o in one]), grad[::7])


def test_log_prior_rejects_wrong_shapes(slots, prior):
    active, params = _states(slots, (1000022,), 2, np.random.default_rng(9))
    with pytest.raises(ValueError, match="do not match the layout"):
        prior.log_prior(active, params[:, :, :-1], np.zeros((2, 1)))


def test_protomodel_round_trip(slots, shared):
    from tdmcmc.models.protomodel.model import read_protomodel

    model = read_protomodel(shared / "oracle-reference" / "models" / "best_paper.json", slots.space)
    active, params = slots.from_protomodel(model)
    back = slots.protomodels(slots.physical(active[None], params[None], np.zeros((1, 1))))[0]
    assert back.masses.keys() == model.masses.keys()
    for p, m in model.masses.items():
        assert back.masses[p] == pytest.approx(m, rel=1e-12)
    assert back.decays == {p: {ch: pytest.approx(br) for ch, br in d.items()} for p, d in model.decays.items()}
    for key, k in back.kappas.items():
        assert k == pytest.approx(model.kappas[key], rel=1e-12)


def test_closed_channels_and_offshell_rule(slots):
    """A light stop (m − m_LSP < m_t) has only t̃ → b C1 etc.; N2 decays three-body only when
    no two-body channel is open."""
    active, params = _states(slots, (1000022, 1000023, 1000006), 1, np.random.default_rng(6))
    params[0, slots.lsp_slot, 0] = -4.0             # ≈ 53 GeV
    batch = slots.physical(active, params, np.zeros((1, 1)))
    m = batch.masses[0]
    j_n2 = slots.slot[1000023]
    open_n2 = {slots.units[j_n2][k] for k in np.flatnonzero(batch.unit_br[0, j_n2] > 0)}
    two_body = any(m[j_n2] > m[slots.lsp_slot] + t for t in (92.0, 125.0))
    assert all((len(u[0]) == 2) == two_body for u in open_n2)
    j_t = slots.slot[1000006]
    if m[j_t] - m[slots.lsp_slot] < 173.0:
        assert batch.unit_br[0, j_t].sum() == 0.0
    else:
        assert batch.unit_br[0, j_t].sum() == pytest.approx(1.0)


def _conditional_uniform_cdf(x: float, lo: float, hi: float, lsp_lo: float = 10.0, lsp_hi: float = 2400.0) -> float:
    """P(m ≤ x) for m | m_LSP ~ U(max(lo, m_LSP), hi), m_LSP ~ U(lsp_lo, lsp_hi): scipy quad."""
    def cdf_given(ml):
        a = max(lo, ml)
        return min(max((x - a) / (hi - a), 0.0), 1.0)
    return integrate.quad(cdf_given, lsp_lo, lsp_hi, points=[lo, x], limit=200)[0] / (lsp_hi - lsp_lo)


def test_prior_only_sampling_matches_the_prior(tmp_path):
    """4 chains × 3,000 draws of the full space with the likelihood off. Power: the Monte-Carlo
    errors are 0.005–0.015, so a 0.06 error in any inclusion probability, P(n) or CDF value fails."""
    from tdmcmc.cli import main

    out = tmp_path / "prior.nc"
    assert main(["sample", "--model", "protomodel", "--prior-only", "--chains", "4", "--draws", "3000",
                 "--tune", "600", "--birth-death-per-sweep", "3", "--seed", "3", "--no-progress", "-o", str(out)]) == 0
    post = xr.open_datatree(out, engine="h5netcdf")["posterior"]
    slots = SlotParameters(default_space())
    prior = ProtomodelPrior(slots)
    active = post["active"].values
    for j, p in enumerate(prior.exact_inclusion()):
        assert_within_mcse(f"P({slots.layout.slot_names[j]})", active[..., j].astype(float), p)
    n = post["n_particles"].values
    for k, p in prior.exact_n_particles().items():
        if p > 0.01:
            assert_within_mcse(f"P(n={k})", (n == k).astype(float), p)
    mass = post["mass"]
    for name, lo in (("XZ1", None), ("Xg", 310.0), ("Xe", 10.0)):
        m = mass.sel(particle=name).values
        on = ~np.isnan(m)
        for x in (300.0, 800.0, 1500.0, 2100.0):
            truth = (x - 10.0) / 2390.0 if lo is None else _conditional_uniform_cdf(x, lo, 2400.0)
            # conditional on the particle being active: P(m ≤ x | on) estimated as a ratio of means
            series = np.where(on, m <= x, False).astype(float) - truth * on
            assert_within_mcse(f"P(m_{name} <= {x} | active) - truth", series, 0.0)
