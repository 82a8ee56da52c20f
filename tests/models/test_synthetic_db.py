"""The synthetic demo database: reproducibility, statistics of its SR limits, consistency of its files.

The files are parsed here with small regular expressions, independently of tdmcmc's database reader.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

from tdmcmc.errors import UserError
from tdmcmc.models.database import synthetic

DEMO = synthetic.demo_database_path()
_POINT = re.compile(r"\[\[\[([0-9.E+-]+)\*GeV,([0-9.E+-]+)\*GeV\],\[[^]]*\]\],([0-9.eE+-]+)(?:\*(fb|pb))?\]")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _keys(path: Path) -> dict[str, str]:
    """key -> raw value of a database text file (values may span lines; comments dropped)."""
    entries: dict[str, str] = {}
    key = None
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].rstrip()
        match = re.match(r"^([A-Za-z]\w*): ?(.*)$", line)
        if match:
            key = match.group(1)
            entries[key] = match.group(2)
        elif line and key:
            entries[key] += "\n" + line
    return entries


def _header(path: Path) -> dict[str, str]:
    """The one-line keys before the first map of a txname file (real maps are up to 20 MB)."""
    keys = {}
    with path.open() as handle:
        for line in handle:
            key, _, value = line.rstrip("\n").partition(": ")
            if key in ("upperLimits", "expectedUpperLimits", "efficiencyMap"):
                break
            keys[key] = value
    return keys


def _map(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(mother, lsp) points in GeV and values (efficiencies, or limits in fb)."""
    rows = _POINT.findall(text)
    points = np.array([(float(m), float(l)) for m, l, _, _ in rows])
    values = np.array([float(v) * (1000.0 if unit == "pb" else 1.0) for _, _, v, unit in rows])
    assert len(rows) == text.count("GeV]]"), "every point of the map was parsed"
    return points, values


def _fb(value: str) -> float:
    number, unit = value.split("*")
    return float(number) * {"fb": 1.0, "pb": 1000.0}[unit]


# --- reproducibility ------------------------------------------------------------------------------


def test_committed_demo_db_is_the_generator_output_byte_for_byte(tmp_path):
    out = tmp_path / "db"
    assert synthetic.main([str(out)]) == 0  # the documented command line, default seed
    generated, committed = _files(out), _files(DEMO)
    assert sorted(generated) == sorted(committed)
    different = [name for name in generated if generated[name] != committed[name]]
    assert different == []


def test_other_seed_changes_counts_not_layout(tmp_path):
    other = synthetic.generate(tmp_path / "db", seed=7)
    assert sorted(_files(other)) == sorted(_files(DEMO))
    def counts(root: Path) -> list[str]:
        infos = [_keys(p) for p in sorted(root.rglob("dataInfo.txt"))]
        return [keys["observedN"] for keys in infos if "observedN" in keys]

    assert counts(other) != counts(DEMO)


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        synthetic.generate(tmp_path)


def test_demo_db_is_small_and_labelled_synthetic():
    files = _files(DEMO)
    assert sum(len(b) for b in files.values()) < 1.5e6
    assert files["version"] == b"synthetic-1.0\n"
    assert b"NOT LHC data" in files["README.rst"]
    assert not (DEMO / "__init__.py").exists()
    infos = sorted(DEMO.rglob("globalInfo.txt"))
    assert len(infos) == 9
    for info in infos:
        assert info.read_text().startswith("# SYNTHETIC ")
        keys = _keys(info)
        assert keys["id"].startswith("SYNTH-") and keys["id"] in info.parent.name
        assert info.parent.parent.name in keys["id"]  # experiment folder name is part of the id
        assert keys["url"] == f"https://example.invalid/synthetic/{keys['id']}"


# --- statistics of one counting experiment --------------------------------------------------------


def test_classic_poisson_limit_for_zero_observed():
    """n = 0: CLs = exp(-s) whatever the background, so the 95% limit is -ln 0.05 = 2.996 events."""
    for background, error in [(0.0, 0.0), (3.2, 1.0), (0.5, 1.0)]:
        assert synthetic.upper_limit_events(0, background, error) == pytest.approx(-math.log(0.05), rel=1e-9)


@pytest.mark.parametrize("n, background", [(1, 0.0), (5, 3.0), (20, 9.6), (226, 210.0)])
def test_limit_without_background_error_matches_scipy_poisson(n, background):
    limit = synthetic.upper_limit_events(n, background, 0.0)
    cls = stats.poisson.cdf(n, limit + background) / stats.poisson.cdf(n, background)
    assert cls == pytest.approx(0.05, rel=1e-8)


@pytest.mark.parametrize("n, background, error", [(20, 9.6, 2.2), (3, 2.8, 0.9), (2, 0.5, 1.0), (62, 90.0, 12.0)])
def test_limit_with_background_error_against_toys(n, background, error):
    """CLs at the computed limit, estimated with 10^6 toys per hypothesis, is 0.05 within 5 MC sigma
    (relative MC error about 0.5-1%; a 3% shift of the limit is 4-46 sigma). Toys: b' from the
    Gaussian truncated at 0 by rejection (the (2, 0.5, 1.0) case tests the truncation), N ~ Poisson."""
    limit = synthetic.upper_limit_events(n, background, error)
    rng = np.random.default_rng(12345)
    size = 1_000_000

    def p_below(signal: float) -> float:
        b_prime = rng.normal(background, error, size=2 * size)
        b_prime = b_prime[b_prime >= 0.0][:size]
        assert len(b_prime) == size
        return float(np.mean(rng.poisson(signal + b_prime) <= n))

    p_sb, p_b = p_below(limit), p_below(0.0)
    cls = p_sb / p_b
    sigma = cls * math.sqrt((1 - p_sb) / (size * p_sb) + (1 - p_b) / (size * p_b))
    assert abs(cls - 0.05) < 5 * sigma


def test_marginal_cdf_quadrature_against_adaptive_integration():
    """Gauss-Legendre on b +- 8 sigma against scipy.quad on b +- 12 sigma, non-integer n included."""
    cases = [(9.6, 3.0, 9.6, 2.2), (2.8, 5.0, 2.8, 0.9), (0.5, 1.0, 0.5, 1.0), (900, 100, 900, 60)]
    for n, signal, background, error in cases:
        weight = lambda x: math.exp(-0.5 * ((x - background) / error) ** 2)
        cdf = lambda x: special.gammaincc(n + 1, signal + x) * weight(x)
        low, high = max(0.0, background - 12 * error), background + 12 * error
        num = integrate.quad(cdf, low, high, epsrel=1e-12, limit=200)[0]
        norm = integrate.quad(weight, low, high, epsrel=1e-12)[0]
        value = synthetic.marginal_poisson_cdf(n, signal, background, error)
        assert value == pytest.approx(num / norm, rel=1e-9)


def test_limits_agree_with_smodels_calculated_values(db124):
    """The SModelS 1.2.4 database comments its ATLAS SR limits with "calculated value: X*fb" (SModelS'
    own asymptotic CLs). A different method, so only O(10%) agreement is expected: median deviation
    below 10% and every SR within 35% (the largest, 31%, is n = 0 where asymptotics are poorest)."""
    ratios = []
    for path in sorted(db124.rglob("dataInfo.txt")):
        raw = path.read_text()
        match = re.search(r"^upperLimit:.*calculated value: ([0-9.eE+-]+)\*fb", raw, re.M)
        if not match:
            continue
        keys = _keys(path)
        n = float(keys["observedN"])
        lumi = float(_keys(path.parent.parent / "globalInfo.txt")["lumi"].split("/")[0])
        limit = synthetic.upper_limit_events(n, float(keys["expectedBG"]), float(keys["bgError"])) / lumi
        ratios.append(limit / float(match.group(1)))
    deviation = np.abs(np.array(ratios) - 1.0)
    assert len(ratios) >= 15
    assert np.median(deviation) < 0.10
    assert deviation.max() < 0.35


# --- consistency of the committed files ------------------------------------------------------------


def test_efficiencies_are_fractions_and_limits_positive():
    n_maps = 0
    for path in sorted(DEMO.rglob("T*.txt")):
        keys = _keys(path)
        assert keys["validated"] == "True" and keys["source"] == "tdmcmc-synthetic"
        if "efficiencyMap" in keys:
            points, eff = _map(keys["efficiencyMap"])
            assert np.all((eff >= 0.0) & (eff <= 1.0))
        else:
            points, observed = _map(keys["upperLimits"])
            expected_points, expected = _map(keys["expectedUpperLimits"])
            assert np.array_equal(points, expected_points)
            assert np.all(observed > 0.0) and np.all(expected > 0.0)
        assert np.all(points[:, 1] < points[:, 0]) and points[:, 0].max() <= 2500.0
        assert 60 <= len(points) <= 300
        n_maps += 1
    assert n_maps == 44


def test_txname_headers_match_the_real_database(db124):
    """Constraint, condition and axes of every synthetic txname occur in a real 1.2.4 file."""
    real: dict[str, set[tuple[str, str, str]]] = {}
    for name in synthetic.TXNAMES:
        for path in db124.rglob(f"{name}.txt"):
            keys = _header(path)
            real.setdefault(name, set()).add((keys["constraint"], keys["condition"], keys["axes"]))
    for path in DEMO.rglob("T*.txt"):
        keys = _keys(path)
        assert (keys["constraint"], keys["condition"], keys["axes"]) in real[keys["txName"]], path


def test_covariance_is_positive_definite_with_bg_errors_on_the_diagonal():
    found = 0
    for info in sorted(DEMO.rglob("globalInfo.txt")):
        keys = _keys(info)
        if "covariance" not in keys:
            continue
        found += 1
        order = [s.strip().strip('"') for s in keys["datasetOrder"].split(",")]
        assert sorted(order) == sorted(p.name for p in info.parent.iterdir() if p.is_dir())
        cov = np.array(ast.literal_eval(keys["covariance"]))
        errors = np.array([float(_keys(info.parent / sr / "dataInfo.txt")["bgError"]) for sr in order])
        np.testing.assert_allclose(np.diag(cov), errors**2, rtol=1e-12)
        np.testing.assert_allclose(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() > 0.0
    assert found == 2


def test_ul_map_expected_limits_follow_the_efficiency_map_twin():
    """SYNTH-ATLAS-13-01 UL maps are derived from its -eff SRs: at every point the expected limit lies
    between best-SR / 4**(1/4) and the best-SR limit min_i(expectedUpperLimit_i / eff_i), up to the
    4-5 digit rounding of the files."""
    ul_dir = DEMO / "13TeV/ATLAS/SYNTH-ATLAS-13-01/data"
    em_dir = DEMO / "13TeV/ATLAS/SYNTH-ATLAS-13-01-eff"
    for txname in ("T2tt", "T2bb"):
        points, expected = _map(_keys(ul_dir / f"{txname}.txt")["expectedUpperLimits"])
        per_sr = []
        for sr in sorted(p for p in em_dir.iterdir() if (p / f"{txname}.txt").exists()):
            sr_points, eff = _map(_keys(sr / f"{txname}.txt")["efficiencyMap"])
            assert np.array_equal(sr_points, points)
            per_sr.append(_fb(_keys(sr / "dataInfo.txt")["expectedUpperLimit"]) / eff)
        best = np.min(per_sr, axis=0)
        assert np.all(expected <= best * 1.001)
        assert np.all(expected >= best / 4 ** 0.25 * 0.999)


def test_observed_counts_carry_the_injected_signal():
    """Over 20000 draws of the generator's sampler, the mean count of each SR is s + b (4 standard
    errors) and the variance b + s + bgError^2 (within 8%, about 4 standard errors of a variance)."""
    for analysis in synthetic.ANALYSES[:2]:
        rng = np.random.Generator(np.random.PCG64(99))
        counts = synthetic.draw_observed(analysis, rng.random((20000, 2 * len(analysis.regions))))
        for k, region in enumerate(analysis.regions):
            signal = synthetic.injected_signal(analysis, region)
            variance = signal + region.background + region.bg_error**2
            assert abs(counts[:, k].mean() - signal - region.background) < 4 * math.sqrt(variance / 20000)
            assert counts[:, k].var() == pytest.approx(variance, rel=0.08)


def test_truth_model_is_preferred_by_the_published_signal_regions():
    """With the default seed, the SR likelihood (Poisson x truncated Gaussian) of the injected truth
    beats background-only in the SRs the truth feeds: -2 ln(L_truth / L_b) < -2 summed over the EM
    results at 13 TeV, and the truth is not excluded by any SR (signal below the observed limit)."""
    q = 0.0
    for analysis in synthetic.ANALYSES:
        if "EM" not in analysis.results or analysis.sqrts != 13:
            continue
        folder = DEMO / f"13TeV/{analysis.experiment}/{analysis.id}-eff"
        for region in analysis.regions:
            keys = _keys(folder / region.name / "dataInfo.txt")
            n, b, db = int(keys["observedN"]), float(keys["expectedBG"]), float(keys["bgError"])
            s = synthetic.injected_signal(analysis, region)
            pmf = lambda sig: synthetic.marginal_poisson_cdf(n, sig, b, db) - (
                synthetic.marginal_poisson_cdf(n - 1, sig, b, db) if n > 0 else 0.0
            )
            q += -2.0 * math.log(pmf(s) / pmf(0.0))
            assert s < _fb(keys["upperLimit"]) * analysis.lumi
    assert q < -2.0
