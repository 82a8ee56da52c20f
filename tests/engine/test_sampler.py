"""The sampler loop on a target with a closed-form posterior (tests/engine/independent_toy.py):
every move family in the sweep (refresh, birth/death, random walk (joint and one slot at a time), MALA, identity swap,
split/merge, replica exchange), warm-up adaptation, reproducibility and checkpoint/resume."""

from __future__ import annotations

import numpy as np
import pytest

from tdmcmc.checkpoint import load_checkpoint
from tdmcmc.sampler import SamplerConfig, advance, sample, start

from tests.engine.independent_toy import IndependentSlots, inclusion, size_distribution, theta_mean
from tests.mcse_checks import assert_within_mcse, mcse_of


def _check_posterior(run) -> None:
    """Inclusion, P(k), E[θ | active] and E[g] within 4 MCSE (+0.005 warm-up bias) of exact."""
    tr = run.trace
    active = tr.active.astype(float)
    k = active.sum(axis=2)
    checks = [(f"P(slot {j})", active[..., j], p) for j, p in enumerate(inclusion())]
    checks += [(f"P(k={n})", (k == n).astype(float), p) for n, p in enumerate(size_distribution())]
    checks.append(("E[g]", tr.globals[..., 0], 0.4))
    for name, series, truth in checks:
        assert_within_mcse(name, series, truth)
    for j in range(4):
        on = tr.active[..., j] > 0
        est = tr.params[..., j, 0][on].mean()
        assert abs(est - theta_mean()[j, 0]) < 0.05, f"E[theta_{j} | active] = {est:.3f}"


@pytest.fixture(scope="module")
def tempered_run():
    config = SamplerConfig(chains=3, draws=2500, tune=800, temperatures=3, max_temperature=8.0, seed=5)
    return sample(IndependentSlots(), config)


def test_all_moves_with_tempering_reproduce_exact_posterior(tempered_run):
    assert tempered_run.move_names == [
        "refresh", "birth_death", "random_walk", "slot_random_walk", "mala", "identity_swap", "split_merge", "swap",
    ]
    _check_posterior(tempered_run)
    rates = {n: np.nanmean(a) for n, a in tempered_run.trace.accept.items()}
    assert rates["split_merge"] > 0.08 and rates["identity_swap"] > 0.5, rates  # split scale adapted


def test_birth_proposal_was_refitted_to_the_posterior(tempered_run):
    """The Gaussian pseudo-prior (birth proposal) starts as the N(0, 1) prior and is refitted in
    warm-up to the active-slot posterior: mean y/(1+s²), std 1.2 × sqrt(s²/(1+s²))."""
    pseudo = tempered_run.pseudo
    np.testing.assert_allclose(pseudo.mean[:, 0], theta_mean()[:, 0], atol=0.12)
    np.testing.assert_allclose(pseudo.std[:, 0], 1.2 * np.sqrt(0.49 / 1.49), rtol=0.2)


def test_step_sizes_adapt_in_warmup_only(tempered_run):
    moves = {move.name: move for move, _ in tempered_run.moves}
    for name in ("random_walk", "mala"):
        assert moves[name].step_size.n_updates == tempered_run.config.tune


def test_ladder_adapts_in_warmup_only(tempered_run):
    temps = tempered_run.trace.temperatures
    assert np.all(temps == temps[0]), "the ladder must be frozen after warm-up"
    assert temps[0, 0] == 1.0 and temps[0, -1] == 8.0
    assert np.all(np.diff(temps[0]) > 0)
    assert not np.isclose(temps[0, 1], np.sqrt(8.0)), "the intermediate level never adapted"
    swaps = tempered_run.trace.swap_accept
    assert swaps.shape == (3, 2500, 2)
    assert np.all((swaps.mean(axis=(0, 1)) > 0.2) & (swaps.mean(axis=(0, 1)) < 1.0))


def test_same_seed_same_draws_other_seed_other_draws():
    cfg = SamplerConfig(chains=2, draws=200, tune=100, temperatures=2, max_temperature=4.0, seed=9)
    a, b = sample(IndependentSlots(), cfg), sample(IndependentSlots(), cfg)
    np.testing.assert_array_equal(a.trace.params, b.trace.params)
    np.testing.assert_array_equal(a.trace.active, b.trace.active)
    c = sample(IndependentSlots(), SamplerConfig(**{**cfg.__dict__, "seed": 10}))
    assert not np.array_equal(a.trace.params, c.trace.params)


@pytest.mark.parametrize("stop_at", [37, 100, 230])  # in warm-up, right after the pseudo-prior refit, in sampling
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, stop_at):
    cfg = SamplerConfig(chains=2, draws=200, tune=100, temperatures=2, max_temperature=4.0, seed=3,
                        checkpoint_every=10_000)
    target = IndependentSlots()
    whole = sample(target, cfg)
    ckpt = tmp_path / "run.nc.ckpt"
    advance(start(target, cfg), target, stop_at=stop_at, checkpoint=ckpt)
    resumed = sample(target, cfg, checkpoint=ckpt, resume=True)
    assert load_checkpoint(ckpt).iteration == cfg.tune + cfg.draws
    for field in ("active", "params", "globals", "log_lik", "log_prior", "swap_accept", "temperatures"):
        np.testing.assert_array_equal(getattr(whole.trace, field), getattr(resumed.trace, field), err_msg=field)
    for name in whole.trace.accept:
        np.testing.assert_array_equal(whole.trace.accept[name], resumed.trace.accept[name])


def test_ladder_adaptation_equalises_swap_rates():
    """Vousden et al.: after warm-up the neighbour swap rates agree within 0.06; the geometric
    start gives 0.60 / 0.77 / 0.87 on this target (measured without warm-up)."""
    config = SamplerConfig(chains=2, draws=600, tune=2500, temperatures=4, max_temperature=20.0, seed=5)
    run = sample(IndependentSlots(), config)
    rates = np.nanmean(run.trace.swap_accept, axis=(0, 1))
    assert rates.max() - rates.min() < 0.06, rates
    assert run.ladder.temperatures[1] < 0.8 * np.geomspace(1, 20, 4)[1]


def test_sharpened_levels_leave_the_recorded_posterior_exact():
    """Two levels below T = 1 (T = 0.3, 0.55) and one above: the recorded T = 1 chains still
    reproduce the exact posterior, the sharpened levels swap with it, and only the levels above
    T = 1 adapt."""
    config = SamplerConfig(chains=3, draws=2500, tune=800, temperatures=3, max_temperature=8.0,
                           sharpened=2, min_temperature=0.3, seed=8)
    run = sample(IndependentSlots(), config)
    temps = run.ladder.temperatures
    assert run.ladder.reference == 2 and temps[2] == 1.0
    np.testing.assert_allclose(temps[:2], np.geomspace(0.3, 1.0, 3)[:2])
    _check_posterior(run)
    assert np.nanmean(run.trace.swap_accept[..., :2]) > 0.3


def test_resume_with_other_settings_is_refused(tmp_path):
    from tdmcmc.errors import UserError

    cfg = SamplerConfig(chains=1, draws=5, tune=5, seed=1)
    ckpt = tmp_path / "r.ckpt"
    advance(start(IndependentSlots(), cfg), IndependentSlots(), stop_at=3, checkpoint=ckpt)
    with pytest.raises(UserError, match="different settings"):
        load_checkpoint(ckpt, SamplerConfig(chains=1, draws=5, tune=5, seed=2))


def test_split_merge_alone_changes_dimension_correctly():
    """Without birth/death, the number k_g of active group slots moves only by split/merge
    (1 ↔ 2 ↔ 3), so from k_g = 1 the chain must reproduce P(k_g | k_g ≥ 1, y), a truncated
    Binomial(3, p) with p the exact inclusion probability of a group slot."""
    from scipy import stats

    class StartInGroup(IndependentSlots):
        def initial_point(self, src):
            active, params, globals_ = super().initial_point(src)
            active[:, 1] = True
            return active, params, globals_

    config = SamplerConfig(chains=3, draws=3000, tune=500, seed=8, exclude_moves=("birth_death", "identity_swap"))
    run = sample(StartInGroup(), config)
    assert "split_merge" in run.move_names and "birth_death" not in run.move_names
    k_group = run.trace.active[..., 1:].sum(axis=2)
    assert k_group.min() >= 1 and run.trace.active[..., 0].max() == 0
    binom = stats.binom(3, inclusion()[1])
    for m in (1, 2, 3):
        series = (k_group == m).astype(float)
        truth = binom.pmf(m) / (1 - binom.pmf(0))
        assert abs(series.mean() - truth) < 4 * mcse_of(series) + 0.005, (m, series.mean(), truth)
