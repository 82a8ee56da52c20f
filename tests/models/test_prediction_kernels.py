"""The numba kernels of :mod:`tdmcmc.models.protomodel.predictions` against the numpy formulations
they replaced (np.unique, np.lexsort, np.bincount, np.maximum.reduceat): equal to the bit, on random
inputs with many ties and repeated keys (small integer ranges), including empty inputs."""

import numpy as np
import pytest

from tdmcmc.models.protomodel import predictions as P


def _first_of_max_reference(keys, weight):
    key = np.zeros(weight.size, dtype=np.int64)
    for row in keys:
        key = key * (int(row.max()) + 1) + row
    order = np.argsort(key, kind="stable")
    key, weight = key[order], weight[order]
    new = np.ones(weight.size, dtype=bool)
    new[1:] = key[1:] != key[:-1]
    segment = np.cumsum(new) - 1
    hit = np.flatnonzero(weight == np.maximum.reduceat(weight, np.flatnonzero(new))[segment])
    first = np.ones(hit.size, dtype=bool)
    first[1:] = segment[hit[1:]] != segment[hit[:-1]]
    return order[hit[first]]


@pytest.mark.parametrize("seed", range(5))
def test_first_of_max_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    keys = rng.integers(0, [[3], [5], [4]], size=(3, n))
    weight = rng.integers(0, 4, size=n).astype(float)  # many ties
    got = P._first_of_max_kernel(keys, weight)
    np.testing.assert_array_equal(got, _first_of_max_reference(keys, weight))
    assert len(got) == len({tuple(c) for c in keys.T})
    assert len(P._first_of_max_kernel(np.zeros((3, 0), dtype=np.int64), np.zeros(0))) == 0


@pytest.mark.parametrize("seed", range(5))
def test_unique_rows_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    key = rng.integers(0, 3, size=(n, 5)).astype(float) * rng.choice([1.0, 0.5, 250.0], size=5)
    rows, inverse = P._unique_rows_kernel(key)
    ref_rows, ref_inverse = np.unique(key, axis=0, return_inverse=True)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(inverse, ref_inverse.ravel())


@pytest.mark.parametrize("seed", range(5))
def test_em_sums_match_unique_and_bincount(seed):
    rng = np.random.default_rng(seed)
    n, n_datasets, n_tx, cut = int(rng.integers(0, 300)), 7, 5, 0.3
    model, dataset, tx = rng.integers(0, 3, n), rng.integers(0, n_datasets, n), rng.integers(0, n_tx, n)
    value = rng.exponential(0.2, n)
    got = P._em_sums(model, dataset, tx, value, n_datasets, n_tx, cut)
    # the numpy formulation: parts per (model, dataset, txname), predictions per (model, dataset)
    part_keys, part_inv = np.unique((model * n_datasets + dataset) * n_tx + tx, return_inverse=True)
    part_xsec = np.bincount(part_inv, weights=value, minlength=len(part_keys))
    pred_keys, pred_inv = np.unique(part_keys // n_tx, return_inverse=True)
    xsec = np.bincount(pred_inv, weights=part_xsec, minlength=len(pred_keys))
    keep = xsec >= cut
    renumber = np.cumsum(keep) - 1
    part_ok = keep[pred_inv]
    expected = (pred_keys[keep] // n_datasets, pred_keys[keep] % n_datasets, xsec[keep], renumber[pred_inv][part_ok],
                part_keys[part_ok] % n_tx, part_xsec[part_ok],
                np.where(keep[pred_inv[part_inv]], renumber[pred_inv[part_inv]], -1))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _compression_kept_reference(masses, model, rows, el_mask, el_gap, minmassgap):
    """The numpy formulation the kernel replaced (Predictor._element_weights before it was compiled)."""
    mask = el_mask[rows]
    compressed = mask.any(axis=1)
    ok = np.ones(len(rows), dtype=bool)
    if compressed.any():
        gap_idx = el_gap[rows[compressed]]
        valid = gap_idx[..., 0] >= 0
        m = masses[model[compressed]]
        gaps = np.where(valid, np.take_along_axis(m, gap_idx[..., 0], axis=1)
                        - np.take_along_axis(m, gap_idx[..., 1], axis=1), np.inf)
        small = gaps < minmassgap
        full = np.all(small | ~valid, axis=1)
        if full.any():
            top = np.max(np.where(valid, gaps, -np.inf), axis=1)
            small = np.where(full[:, None], gaps < 0.999 * top[:, None], small)
        ok[compressed] = np.all((small == mask[compressed]) | ~valid, axis=1)
    return ok


@pytest.mark.parametrize("seed", range(5))
def test_compression_kept_matches_numpy(seed):
    """Gaps near minmassgap and near 0.999 of the largest gap, unused gap slots (-1) and NaN masses."""
    rng = np.random.default_rng(seed)
    n_rows, n_models, n_particles, k = 200, 4, 6, 3
    masses = rng.choice([100.0, 105.0, 109.99, 110.0, 110.01, 115.0, 300.0], size=(n_models, n_particles))
    masses[rng.random(masses.shape) < 0.05] = np.nan
    el_gap = rng.integers(0, n_particles, size=(n_rows, k, 2)).astype(np.int16)
    el_gap[rng.random((n_rows, k)) < 0.3] = -1
    el_mask = (rng.random((n_rows, k)) < 0.4) & (el_gap[..., 0] >= 0)
    rows = rng.integers(0, n_rows, 500)
    model = rng.integers(0, n_models, 500)
    got = P._compression_kept(masses, model, rows, el_mask, el_gap, 10.0)
    np.testing.assert_array_equal(got, _compression_kept_reference(masses, model, rows, el_mask, el_gap, 10.0))
    assert 0 < (~got).sum() and 0 < (got & el_mask[rows].any(axis=1)).sum()  # both decisions exercised
