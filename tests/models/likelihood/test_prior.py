"""The paper's expo1 prior: counting rules and the paper's published K values (method ref. §6.4, §8.1)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from tdmcmc.models.likelihood.prior import (branching_count, counted_ssms, is_counted_ssm, k_statistic,
                                            log_prior_expo1, n_branchings, n_ssm, paper_log_prior, ssm_count)

XZ1, XD, XT = 1000022, 1000001, 1000006

# The paper's best model (real run #9, §8.1): κ after μ̂ absorption.
HISCORE_KAPPA = {
    (XD, XD): 0.493, (-XD, -XD): 0.493, (-XD, XD): 0.492, (XD, XZ1): 0.493, (-XD, XZ1): 0.493,
    (XT, XT): 1.325, (-XT, XT): 1.226, (-XT, -XT): 1.11, (XT, XZ1): 1.226, (-XT, XZ1): 1.11,
    (XD, XT): 1.11, (-XD, XT): 1.11, (XD, -XT): 1.11, (-XD, -XT): 1.11, (XZ1, XZ1): 0.003,
}
# Assumption (the Pythia cross sections are not stored): the pairs above 0.001 fb are q̃q̃*, the
# same-sign d̃d̃ (neutralino exchange), q̃χ̃⁰₁ associated production and t̃t̃*. Three published K
# values below agree with exactly this set, which pins it down.
PRODUCED_FB = {(-XD, XD): 30.0, (XD, XD): 0.05, (XD, XZ1): 2.0, (-XD, XZ1): 0.5, (-XT, XT): 3.0}
DECAYS = {XD: {(XZ1, 1): 1.0}, XT: {(XZ1, 6): 1.0}, XZ1: {}}


def _without(pid):
    masses = {XZ1: 162.552, XD: 734.948, XT: 1165.865}
    masses.pop(pid, None)
    return masses


@pytest.mark.parametrize("clustering", ["bins", "relative"])
@pytest.mark.parametrize("removed, z, k_paper, counts", [
    (None, 3.237, 6.901, (3, 0, 2.3)),          # the hiscore
    (XT, 2.216, 2.586, (2, 0, 1.3)),            # "without Xt"
    (XD, 2.481, 3.905, (2, 0, 1.0)),            # "without Xd"
])
def test_paper_hiscore_k(clustering, removed, z, k_paper, counts):
    log_pi, got = paper_log_prior(_without(removed), DECAYS, HISCORE_KAPPA, PRODUCED_FB,
                                  clustering=clustering)
    assert (got["n_particles"], got["n_br"]) == counts[:2]
    assert got["n_ssm"] == pytest.approx(counts[2], abs=1e-12)
    # Z is quoted to 3 decimals: |δK| ≤ 2 Z · 0.0005, plus 0.0005 for the rounding of K.
    assert abs(k_statistic(z, log_pi) - k_paper) <= 2 * z * 5e-4 + 5e-4


def reference_greedy(values, valid, same):
    """Plain-Python statement of the greedy rule: a value opens a cluster unless it matches an opener."""
    reps = []
    for v, ok in zip(values, valid):
        if ok and not any(same(v, r) for r in reps):
            reps.append(v)
    return len(reps)


def test_branching_counts_against_reference():
    rng = np.random.default_rng(11)
    brs = rng.choice([0.0, 1e-6, 0.2, 0.203, 0.207, 0.21, 0.3, 0.5], size=(200, 3, 6))
    active = rng.random((200, 3)) < 0.8
    same = lambda a, b: abs(a - b) / (a + b) < 0.025
    expected = [sum(reference_greedy(p, p > 1e-5, same) - 1 for p, a in zip(model, act) if a)
                for model, act in zip(brs, active)]
    np.testing.assert_array_equal(n_branchings(brs, active), expected)
    # A chain: 0.314 joins 0.300, 0.328 is 2.2% from 0.314 but 4.5% from the opener 0.300.
    assert n_branchings(np.array([[0.3, 0.314, 0.328]]), np.array([1])) == 1
    assert n_branchings(np.array([[1.0, 0.0]]), np.array([1])) == 0
    assert n_branchings(np.array([[0.0, 0.0]]), np.array([1])) == -1      # the paper's quirk


@pytest.mark.parametrize("clustering", ["bins", "relative"])
def test_ssm_counts_against_reference(clustering):
    rng = np.random.default_rng(5)
    kappa = rng.choice([0.49, 0.492, 0.4995, 0.5005, 0.51, 1.0, 1.02, 1.035], size=(300, 7))
    counted = (rng.random((300, 7)) < 0.7).astype(float)
    if clustering == "bins":
        def n_clusters(k, c):
            return len({int(100 * x) for x, ok in zip(k, c) if ok})
    else:
        def n_clusters(k, c):
            return reference_greedy(k, c, lambda a, b: 2 * abs(a - b) / (a + b) < 0.03)
    expected = [n_clusters(k, c) + 0.1 * (c.sum() - n_clusters(k, c)) for k, c in zip(kappa, counted)]
    np.testing.assert_allclose(n_ssm(kappa, counted, clustering), expected, atol=1e-12)
    pair = np.array([0.499, 0.501])
    assert n_ssm(pair, np.ones(2), "bins") == pytest.approx(2.0)        # bins 49 and 50
    assert n_ssm(pair, np.ones(2), "relative") == pytest.approx(1.1)
    with pytest.raises(ValueError, match="clustering"):
        n_ssm(pair, np.ones(2), "kmeans")


def test_counted_thresholds():
    kappa = np.array([1e-4, 2e-4, 1.0, 1.0, 1.0])
    xsec = np.array([1.0, 1.0, 1e-3, 0.9e-3, 1.0])
    active = np.array([1, 1, 1, 1, 0])
    assert counted_ssms(kappa, xsec, active).tolist() == [0, 1, 1, 0, 0]


def test_pytensor_matches_numpy_batched():
    rng = np.random.default_rng(2)
    brs = rng.choice([0.0, 0.2, 0.205, 0.6], size=(4, 3, 5))
    active = (rng.random((4, 3)) < 0.7).astype(float)
    kappa = rng.choice([0.49, 0.492, 1.0, 1.02], size=(4, 6))
    counted = (rng.random((4, 6)) < 0.7).astype(float)
    b, a = pt.tensor3("b", shape=(None, None, 5)), pt.dmatrix("a")
    k, c = pt.tensor("k", shape=(None, 6)), pt.dmatrix("c")
    out = [log_prior_expo1(pt.sum(a, -1) + 1, n_branchings(b, a), n_ssm(k, c, cl))
           for cl in ("bins", "relative")]
    # FAST_COMPILE: the same graph without C compilation (the unrolled greedy loop compiles slowly).
    f = pytensor.function([b, a, k, c], out + [pytensor.grad(out[1].sum(), k)],
                          mode="FAST_COMPILE")
    for got, cl in zip(f(brs, active, kappa, counted)[:2], ("bins", "relative")):
        expected = log_prior_expo1(active.sum(-1) + 1, n_branchings(brs, active),
                                   n_ssm(kappa, counted, cl))
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert not f(brs, active, kappa, counted)[2].any()                      # piecewise constant


def test_compiled_rules_equal_array_forms():
    """The compiled one-row rules (the batched prior's) give the array functions' counts bit for bit,
    on values crowding the tolerances, the 1e-5 / 1e-4 / 0.001 fb cuts, bin edges, NaN and inf."""
    rng = np.random.default_rng(17)
    brs = rng.choice([0.0, 1e-6, 1e-5, 1.1e-5, 0.2, 0.203, 0.2051, 0.21, 0.3, 0.5, np.nan], size=(3000, 7))
    np.testing.assert_array_equal([branching_count(b) for b in brs], n_branchings(brs[:, None, :], np.ones((3000, 1))))
    kappa = rng.choice([1e-4, 1.0001e-4, 0.49, 0.492, 0.4995, 0.5, 0.5005, 0.51, 1.0, 1.02, 1.035, 1.0306,
                        np.nan, np.inf], size=(3000, 8))
    xsec = rng.choice([0.0, 0.9e-3, 1e-3, 1.0, np.nan], size=kappa.shape)
    active = rng.random(kappa.shape) < 0.8
    counted = counted_ssms(kappa, xsec, active)
    assert counted.tolist() == [[float(is_counted_ssm(*x)) for x in zip(*row)] for row in zip(active, kappa, xsec)]
    assert 0.2 < counted.mean() < 0.8
    for clustering in ("bins", "relative"):
        expected = n_ssm(kappa, counted, clustering)
        got = [ssm_count(k, c > 0, clustering == "bins") for k, c in zip(kappa, counted)]
        assert np.array_equal(got, expected), clustering
        assert len(set(expected.tolist())) >= 10
