"""``tdmcmc compare``: CPU axes and best-K curves by hand, content frequencies by hand, a hiscore placed in an
i.i.d. synthetic posterior with known set probabilities and normal masses / K (answers from scipy), and the
CLI on a real greedy walk on the demo database."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib import image
from scipy import stats

from tdmcmc.cli import main
from tdmcmc.diagnostics.compare import (
    compare,
    content_frames,
    greedy_best_k,
    place_hiscore,
    quantile_of,
    read_greedy,
    sampler_best_k,
)
from tdmcmc.diagnostics.run_file import from_tree
from tdmcmc.errors import UserError

from .synthetic import run_tree

XZ1, XT, XD, XE = 1000022, 1000006, 1000001, 1000011
NAMES = ["XZ1", "Xt", "Xd"]
SETS = [(True, True, False), (True, False, False), (True, True, True)]
P_SETS = [0.5, 0.3, 0.2]
MASS_MEAN, MASS_SD = np.array([300.0, 1000.0, 800.0]), np.array([30.0, 50.0, 40.0])
K_MEAN, K_SD = 5.0, 2.0


def _hiscore(k: float, masses: dict[int, float]) -> dict:
    return {"K": k, "Z": np.sqrt(max(k, 0.0)), "masses": {str(p): m for p, m in masses.items()}}


def _greedy_doc(tmp_path, walkers: list[dict], hiscores: list[dict], name: str = "g.json"):
    doc = {"command": "greedy", "database": {"content_hash": "abc"}, "hiscores": hiscores, "walkers": walkers}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _iid_run(chains: int = 4, draws: int = 2500, seed: int = 11, attrs: dict | None = None):
    """I.i.d. draws: particle set from P_SETS, masses and K normal, independent of the set."""
    rng = np.random.default_rng(seed)
    which = rng.choice(len(SETS), p=P_SETS, size=(chains, draws))
    active = np.array(SETS)[which]
    mass = MASS_MEAN + MASS_SD * rng.standard_normal((chains, draws, 3))
    k = K_MEAN + K_SD * rng.standard_normal((chains, draws))
    tree = run_tree(active, {"mass": mass}, -0.5 * k, slot_names=NAMES, scalars={"K": k})
    tree.attrs.update(attrs if attrs is not None else {"tune_cpu_seconds": 1.0, "sampling_cpu_seconds": 3.0})
    return from_tree(tree)


def test_quantile_of_counts_ties_half():
    assert quantile_of(2.0, np.array([1.0, 2.0, 3.0, np.nan])) == pytest.approx(0.5)
    assert quantile_of(0.0, np.array([1.0, 2.0])) == 0.0
    assert np.isnan(quantile_of(1.0, np.array([np.nan])))


def test_best_k_curves_and_cpu_axes_by_hand(tmp_path):
    walkers = [
        {"K_proposed": [None, 1.0, 0.5, 2.0], "accepted": [False, True, False, True],
         "n_particles": [2, 2, 2, 3], "cpu_seconds": 1.0},
        {"K_proposed": [3.0, None, 1.0, 4.0], "accepted": [True, False, True, True],
         "n_particles": [2, 2, 3, 3], "cpu_seconds": 3.0},
    ]
    greedy = read_greedy(_greedy_doc(tmp_path, walkers, []))
    g = greedy_best_k(greedy)
    # summed CPU 4 s over 4 steps: 1 s per step of both walkers
    np.testing.assert_allclose(g["cpu_seconds"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(g["best_K"], [3.0, 3.0, 3.0, 4.0])

    active = np.ones((2, 3, 1), bool)
    k = np.array([[1.0, np.nan, 5.0], [2.0, 3.0, 0.0]])
    tree = run_tree(active, {}, np.zeros((2, 3)), scalars={"K": k})
    tree.attrs.update(tune_cpu_seconds=1.0, sampling_cpu_seconds=3.0)
    s = sampler_best_k(from_tree(tree))
    np.testing.assert_allclose(s["cpu_seconds"], [2.0, 3.0, 4.0])  # tuning 1 s, then 1 s per draw
    np.testing.assert_allclose(s["best_K"], [2.0, 3.0, 5.0])

    tree.attrs.clear()
    tree.attrs.update(tune_seconds=0.0, sampling_seconds=6.0)
    wall = compare(from_tree(tree), greedy)
    assert wall.time_kind == "wall" and any("wall" in w for w in wall.warnings)
    np.testing.assert_allclose(wall.sampler_curve["cpu_seconds"], [2.0, 4.0, 6.0])
    # the printed table reads both step functions at 0.6, 1.2, ..., 6 s (sampler draws at 2, 4, 6 s)
    table = wall.best_k.set_index(wall.best_k["cpu_seconds"].round(6))
    np.testing.assert_allclose(table.loc[[1.8, 3.0, 4.2, 6.0], "sampler_best_K"], [np.nan, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(table.loc[[0.6, 3.0, 4.2], "greedy_best_K"], [np.nan, 3.0, 4.0])
    tree.attrs.clear()
    with pytest.raises(UserError, match="timing"):
        compare(from_tree(tree), greedy)


def test_paper_run_best_group_gives_the_curve_from_the_first_iteration():
    """A paper-target run with a ``best`` group: best K = 2 × the best log L over chains at each
    iteration, at the measured CPU seconds (warm-up included); iterations not yet run are left out."""
    import xarray as xr

    tree = run_tree(np.ones((2, 3, 1), bool), {}, np.zeros((2, 3)), scalars={"K": np.zeros((2, 3))})
    tree.attrs.update(tune_cpu_seconds=1.0, sampling_cpu_seconds=3.0, target="paper")
    history = np.array([[0.5, 1.0, 1.0, 2.5, np.nan], [0.0, 1.5, 1.5, 1.5, np.nan]])
    tree["best"] = xr.DataTree(xr.Dataset({"best_log_likelihood": (("chain", "iteration"), history),
                                           "cpu_seconds": (("iteration",), [0.5, 1.0, 2.0, 3.0, np.nan])},
                                          coords={"iteration": np.arange(1, 6)}))
    run = from_tree(tree)
    curve = sampler_best_k(run)
    np.testing.assert_allclose(curve["cpu_seconds"], [0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(curve["best_K"], [1.0, 3.0, 3.0, 5.0])
    tree.attrs["target"] = "bayes"                     # ln R is not K/2: the posterior K is used
    assert len(sampler_best_k(from_tree(tree))) == 3


def test_content_frequencies_by_hand(tmp_path):
    walkers = [
        {"K_proposed": [1.0, 2.0, 3.0], "accepted": [True, True, False], "n_particles": [2, 3, 3],
         "cpu_seconds": 1.0, "particles": [[XZ1, XT], [XZ1, XT, XD], [XZ1, XT, XD]]},
        {"K_proposed": [1.0, 2.0, 3.0], "accepted": [True, False, True], "n_particles": [2, 2, 3],
         "cpu_seconds": 1.0, "particles": [[XZ1, XT], [XZ1, XT], [XZ1, XT, XE]]},
    ]
    hiscores = [_hiscore(3.0, {XZ1: 300.0, XT: 1000.0, XE: 400.0}), _hiscore(2.0, {XZ1: 300.0, XT: 1000.0})]
    greedy = read_greedy(_greedy_doc(tmp_path, walkers, hiscores))
    run = _iid_run(chains=2, draws=500)
    frames = content_frames(run, greedy)
    sets = frames["sets"].set_index("set")
    # accepted: XZ1+Xt (w0 s0, w1 s0), XZ1+Xt+Xd (w0 s1), XZ1+Xt+Xe (w1 s2)
    assert sets.loc["XZ1+Xt", "greedy_accepted"] == pytest.approx(0.5)
    assert sets.loc["XZ1+Xt+Xd", "greedy_accepted"] == pytest.approx(0.25)
    assert sets.loc["XZ1+Xt+Xe", "greedy_accepted"] == pytest.approx(0.25)
    assert sets.loc["XZ1+Xt+Xe", "greedy_hiscores"] == pytest.approx(0.5)
    assert sets.loc["XZ1+Xt+Xe", "posterior"] == 0.0 and pd.isna(sets.loc["XZ1+Xt+Xe", "rank"])
    assert sets.loc["XZ1+Xt", "rank"] == 1 and "other" not in sets.index
    inc = frames["inclusion"].set_index("particle")
    assert inc.loc["Xe", "greedy_accepted"] == pytest.approx(0.25) and inc.loc["Xe", "posterior"] == 0.0
    assert inc.loc["Xd", "greedy_hiscores"] == 0.0
    sizes = frames["sizes"].set_index("n_particles")
    assert sizes.loc[3, "greedy_accepted"] == pytest.approx(0.5) and sizes.loc[2, "greedy_hiscores"] == 0.5
    assert sizes["posterior"].sum() == pytest.approx(1.0)


def test_hiscore_placed_in_an_iid_posterior_with_known_answers():
    """10 000 i.i.d. draws: set frequencies within 4 binomial σ (σ ≤ 0.005), quantiles of the greedy values
    within 0.03 (4σ for 5000 conditional draws), mass interval ends within 8 GeV (4× the sampling σ of
    the 2.5 % quantile of N(1000, 50) from 5000 draws, 1.9 GeV)."""
    run = _iid_run()
    p = place_hiscore(run, _hiscore(K_MEAN + K_SD, {XZ1: 330.0, XT: 900.0}))
    assert p.label == "XZ1+Xt" and p.rank == 1 and p.n_sets == 3
    assert p.p_set == pytest.approx(0.5, abs=0.02)
    assert p.K_quantile == pytest.approx(stats.norm.cdf(1.0), abs=0.02)
    assert p.K_quantile_set == pytest.approx(stats.norm.cdf(1.0), abs=0.03)
    rows = p.particles.set_index("particle")
    assert (rows["condition"] == "set").all() and rows.loc["Xt", "n_draws"] == p.n_set_draws
    assert rows.loc["XZ1", "quantile"] == pytest.approx(stats.norm.cdf(1.0), abs=0.03)
    assert rows.loc["Xt", "quantile"] == pytest.approx(stats.norm.cdf(-2.0), abs=0.01)
    for col, q in (("q2.5", 0.025), ("q16", 0.16), ("q84", 0.84), ("q97.5", 0.975)):
        assert rows.loc["Xt", col] == pytest.approx(stats.norm.ppf(q, 1000.0, 50.0), abs=8.0)

    rare = place_hiscore(run, _hiscore(1.0, {XZ1: 300.0, XT: 1000.0, XD: 760.0}), min_set_draws=5000)
    assert rare.rank == 3 and rare.p_set == pytest.approx(0.2, abs=0.02)
    rows = rare.particles.set_index("particle")
    assert (rows["condition"] == "active").all()  # ~2000 draws of the set < 5000: conditional on active
    assert rows.loc["Xd", "n_draws"] == run.active[:, :, 2].sum()
    assert rows.loc["Xd", "quantile"] == pytest.approx(stats.norm.cdf(-1.0), abs=0.03)

    unseen = place_hiscore(run, _hiscore(1.0, {XZ1: 300.0, XE: 400.0}))
    assert unseen.rank is None and unseen.p_set == 0.0 and unseen.label == "XZ1+Xe"
    assert unseen.particles.set_index("particle").loc["Xe", "condition"] == "absent"


def test_read_greedy_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"command": "sample"}))
    with pytest.raises(UserError, match="bad.json"):
        read_greedy(bad)
    path = _greedy_doc(tmp_path, [{"K_proposed": [1.0]}], [])
    with pytest.raises(UserError, match=r"walkers\[0\] has no accepted"):
        read_greedy(path)


@pytest.fixture(scope="module")
def real_greedy(tmp_path_factory):
    """A real greedy walk on the shipped demo database: 2 walkers × 5 steps (a few seconds)."""
    from tdmcmc.models.database.synthetic import demo_database_path
    from tdmcmc.models.greedy.cli import run_greedy

    doc = run_greedy(demo_database_path(), walkers=2, steps=5, seed=1, jobs=1)
    path = tmp_path_factory.mktemp("greedy") / "greedy.json"
    path.write_text(json.dumps(doc))
    return path, doc


def test_cli_on_a_real_greedy_walk(real_greedy, tmp_path, capsys):
    path, doc = real_greedy
    run = tmp_path / "run.nc"
    tree = _iid_run(chains=2, draws=400).tree
    tree.to_netcdf(run, engine="h5netcdf")
    out = tmp_path / "cmp"
    assert main(["compare", str(run), str(path), "-o", str(out), "--hiscores", "2"]) == 0
    text = capsys.readouterr().out
    best = max(k for w in doc["walkers"] for k in w["K_proposed"] if k is not None)
    assert f"best K {best:.3f}" in text
    assert "Best K so far" in text and "Particle sets" in text and "Greedy hiscore #2" in text
    for name in ("best_k.png", "contents.png", "hiscore_1.png", "hiscore_2.png"):
        img = image.imread(out / name)
        assert img.shape[0] > 250 and img.shape[1] > 600  # not empty or collapsed
    assert "contents.png" in (out / "index.html").read_text()

    assert main(["compare", str(run), str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["greedy_best_K"][-1]["best_K"] == pytest.approx(best)
    assert data["greedy_best_K"][-1]["cpu_seconds"] == pytest.approx(sum(w["cpu_seconds"] for w in doc["walkers"]))
    assert data["sampler_best_K"][-1]["cpu_seconds"] == pytest.approx(4.0)
    assert data["hiscores"][0]["K"] == pytest.approx(doc["hiscores"][0]["K"])
    assert sum(r["posterior"] for r in data["sizes"]) == pytest.approx(1.0)
