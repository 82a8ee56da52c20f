"""Generator of the synthetic SModelS-format demo database shipped with tdmcmc (NOT LHC data).

``generate(outdir, seed)`` writes a small database in the SModelS v1/v2 text format (the grammar of
release 1.2.4): ``version``, ``README.rst`` and ``{8TeV,13TeV}/{ATLAS,CMS}/<folder>/`` with
``globalInfo.txt``, one dataset folder per signal region (``data`` for upper-limit results) holding
``dataInfo.txt`` and one ``<TxName>.txt`` per simplified model. The committed copy in
``tdmcmc/models/demo_db`` is the output for ``DEFAULT_SEED`` and is the database used when the user
names none. Regenerate with ``python -m tdmcmc.models.database.synthetic OUTDIR [--seed N]``.

Physics content (all numbers invented, chosen to look like LHC SUSY searches):

* Analyses (``ANALYSES``): hidden or published signal regions (SRs), each with an expected
  background ``b`` and 1 sigma absolute error ``bgError`` (events), and per-txname efficiencies
  ``eff(M, m) = eps_max * S((M - m - dm0) / wdm) * S((M - m0) / wm)``, ``S`` the logistic
  function, ``M`` the mother and ``m`` the LSP mass (GeV): efficiencies rise with the mass splitting
  and with the mother mass, with thresholds ``dm0`` and ``m0`` that differ per SR (harder SRs have
  higher thresholds and smaller backgrounds). Efficiencies lie in ``[0, eps_max]``, ``eps_max <= 0.22``.
* Truth (``TRUTH``): the observed counts contain a mild signal from a hidden model, a 1100 GeV stop
  decaying to t + LSP (T2tt) and one 800 GeV light-flavour squark decaying to q + LSP (T2), LSP
  mass 100 GeV, with production cross sections ``kappa * sigma_ref`` (``sigma_ref`` from the
  NNLO+NNLL reference tables, see ``Production``). The injected signal in an SR is
  ``s = sum_T sigma_T * lumi * eff_T(truth masses)``.
* Observed counts: ``n ~ Poisson(s + b_true)``, ``b_true = max(0, b + L z)``, ``z`` standard
  normal and ``L`` the Cholesky factor of the background covariance (diagonal ``bgError**2``; the
  analyses with a published ``covariance`` use ``rho**|i-j|`` correlations). Random numbers are
  drawn by inversion from ``numpy.random.Generator(PCG64(seed)).random()`` uniforms, so the output
  depends on NumPy only through its uniform stream.
* SR limits (``upper_limit_events``): 95% CL CLs upper limit on the signal count with the count
  ``n`` as test statistic, ``CLs = P(N <= n | s + b') / P(N <= n | b')``, the background ``b'``
  marginalised over a Gaussian of width ``bgError`` truncated at ``b' >= 0`` (hybrid
  Bayesian-frequentist, Cousins-Highland), integrated with 96-point Gauss-Legendre quadrature over
  ``b +- 8 bgError`` (agrees with adaptive quadrature to 1e-9 relative; limits checked with toys,
  within a median 6% of the "calculated values" quoted in the SModelS 1.2.4 database, and within a
  median 4% of SModelS 3.2.1's simplified-likelihood limits for the SRs generated here).
  The expected limit uses the Asimov count ``n = b``, with the Poisson CDF continued to
  non-integer ``n`` by the regularised incomplete gamma function ``Q(n + 1, lambda)``.
  ``upperLimit``/``expectedUpperLimit`` in ``dataInfo.txt`` are these limits divided by the
  luminosity (fiducial cross section, fb).
* Upper-limit maps: for a txname of a UL result, the sensitivity of SR ``i`` at a mass point is
  ``S_i = eff_i * lumi / N_i^exp`` (1/fb), ``N_i^exp`` the expected SR limit in events. The expected
  limit is ``1 / (sum_i S_i**4)**(1/4)`` (a smooth version of "the best expected SR", slightly
  stronger where SRs overlap, as in a combined fit); the observed limit is the expected one times
  ``exp(sum_i w_i log(N_i^obs / N_i^exp))`` with ``w_i = S_i**4 / sum_j S_j**4``. Both are > 0;
  the observed limits are weaker than expected where the SRs that received the injected signal are
  the most sensitive (at and above the truth masses), stronger where SRs with deficits dominate.
  UL results that have an ``-eff`` twin use exactly the twin's SRs; the others use
  unpublished SRs defined here.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special, stats

from tdmcmc.errors import UserError

DEFAULT_SEED = 20201224
VERSION = "synthetic-1.0"
CONFIDENCE_LEVEL = 0.95
LAST_UPDATE = "2026/11/22"
UL_SENSITIVITY_POWER = 4.0

_QUADRATURE_NODES, _QUADRATURE_WEIGHTS = np.polynomial.legendre.leggauss(96)
_QUADRATURE_HALF_WIDTH = 8.0  # in units of bgError


# ---------------------------------------------------------------------------------------------
# Statistics of one counting experiment
# ---------------------------------------------------------------------------------------------


def marginal_poisson_cdf(n: float, signal: float, background: float, bg_error: float) -> float:
    """P(N <= n) for N ~ Poisson(signal + b'), b' ~ Gaussian(background, bg_error) truncated at 0.

    ``n`` may be non-integer (regularised incomplete gamma continuation). Events throughout.
    """
    if bg_error <= 0.0:
        return float(special.gammaincc(n + 1.0, signal + background))
    low = max(0.0, background - _QUADRATURE_HALF_WIDTH * bg_error)
    high = background + _QUADRATURE_HALF_WIDTH * bg_error
    half = 0.5 * (high - low)
    b_prime = low + half * (_QUADRATURE_NODES + 1.0)
    weights = _QUADRATURE_WEIGHTS * np.exp(-0.5 * ((b_prime - background) / bg_error) ** 2)
    cdf = special.gammaincc(n + 1.0, signal + b_prime)
    return float(np.dot(weights, cdf) / weights.sum())


def cls(signal: float, n: float, background: float, bg_error: float) -> float:
    """CLs of ``signal`` events given ``n`` observed, with the count as test statistic."""
    return marginal_poisson_cdf(n, signal, background, bg_error) / marginal_poisson_cdf(
        n, 0.0, background, bg_error
    )


def upper_limit_events(
    n: float, background: float, bg_error: float, cl: float = CONFIDENCE_LEVEL
) -> float:
    """CLs upper limit on the signal count (events) at confidence level ``cl``.

    Classic check: ``n = 0, background = 0`` gives ``-ln(1 - cl)`` = 2.996 events at 95% CL.
    """
    alpha = 1.0 - cl
    high = max(5.0, n + 10.0 * math.sqrt(n + background + bg_error**2 + 1.0))
    while cls(high, n, background, bg_error) > alpha:
        high *= 2.0
    return float(
        optimize.brentq(
            lambda s: cls(s, n, background, bg_error) - alpha, 0.0, high, xtol=1e-10, rtol=1e-12
        )
    )


def expected_upper_limit_events(
    background: float, bg_error: float, cl: float = CONFIDENCE_LEVEL
) -> float:
    """Expected CLs upper limit (events): the limit for the Asimov count ``n = background``."""
    return upper_limit_events(background, background, bg_error, cl)


# ---------------------------------------------------------------------------------------------
# Specification of the synthetic analyses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A triangular mass grid (GeV): mothers ``mother_min..mother_max`` in steps of
    ``mother_step``; LSPs ``0..lsp_max`` in steps of ``lsp_step`` with ``mother - lsp >= min_gap``."""

    mother_min: float
    mother_max: float
    mother_step: float
    lsp_max: float
    lsp_step: float
    min_gap: float

    def points(self) -> np.ndarray:
        """All (mother, lsp) points, shape (n, 2), ordered by mother then LSP mass."""
        mothers = np.arange(self.mother_min, self.mother_max + 0.5 * self.mother_step, self.mother_step)
        lsps = np.arange(0.0, self.lsp_max + 0.5 * self.lsp_step, self.lsp_step)
        return np.array([(m, l) for m in mothers for l in lsps if m - l >= self.min_gap])


@dataclass(frozen=True)
class TxNameSpec:
    """Header of a txname file, copied from the real database, and its grid per sqrt(s) (TeV)."""

    constraint: str
    condition: str
    condition_description: str
    grids: dict[int, Grid]


TXNAMES: dict[str, TxNameSpec] = {
    "T1": TxNameSpec(
        "[[['jet','jet']],[['jet','jet']]]", "None", "None",
        {13: Grid(600, 2500, 100, 1600, 100, 100), 8: Grid(300, 1600, 100, 900, 100, 100)},
    ),
    "T2": TxNameSpec(
        "[[['jet']],[['jet']]]", "None", "None",
        {13: Grid(300, 2000, 100, 1200, 100, 100), 8: Grid(200, 1200, 100, 700, 100, 100)},
    ),
    "T2tt": TxNameSpec(
        "[[['t']],[['t']]]", "None", "None",
        {13: Grid(200, 1600, 100, 1000, 100, 200), 8: Grid(200, 900, 50, 500, 50, 200)},
    ),
    "T2bb": TxNameSpec(
        "[[['b']],[['b']]]", "None", "None",
        {13: Grid(200, 1600, 100, 1000, 100, 100), 8: Grid(200, 900, 50, 600, 50, 100)},
    ),
    "T1tttt": TxNameSpec(
        "[[['t','t']],[['t','t']]]", "None", "None",
        {13: Grid(600, 2400, 100, 1500, 100, 400), 8: Grid(400, 1500, 100, 900, 100, 400)},
    ),
    "T1bbbb": TxNameSpec(
        "[[['b','b']],[['b','b']]]", "None", "None",
        {13: Grid(600, 2500, 100, 1600, 100, 100), 8: Grid(400, 1600, 100, 1000, 100, 100)},
    ),
    "TChiWZ": TxNameSpec(
        "[[['W']],[['Z']]]", "None", "None",
        {13: Grid(100, 1100, 50, 550, 50, 100), 8: Grid(100, 700, 50, 400, 50, 100)},
    ),
    "TSlepSlep": TxNameSpec(
        "[[['e+']],[['e-']]]+[[['mu+']],[['mu-']]]",
        "Cgtr([[['mu+']],[['mu-']]],[[['e+']],[['e-']]])",
        "[[['mu+']],[['mu-']]] > [[['e+']],[['e-']]]",
        {13: Grid(100, 900, 50, 550, 50, 50), 8: Grid(100, 500, 25, 300, 25, 50)},
    ),
}


@dataclass(frozen=True)
class Cuts:
    """Kinematic thresholds of an SR (GeV): efficiency turn-on in the mother mass at ``m0``
    (width ``wm``) and in the mass splitting at ``dm0`` (width ``wdm``)."""

    m0: float
    wm: float
    dm0: float
    wdm: float


@dataclass(frozen=True)
class SignalRegion:
    """An SR: name, expected background and its 1 sigma error (events), cuts, and the plateau
    efficiency ``eps_max`` per txname (txnames absent here have no efficiency in this SR)."""

    name: str
    background: float
    bg_error: float
    cuts: Cuts
    eps_max: dict[str, float]


@dataclass(frozen=True)
class Analysis:
    """A synthetic analysis; ``sqrts_text``/``lumi_text`` are written to globalInfo as they are
    (their formats vary, as in the real database). ``results`` holds "UL" (folder ``<id>``, maps
    for ``ul_txnames`` derived from the SRs) and/or "EM" (folder ``<id>-eff``, one dataset per SR).
    ``correlation`` > 0 publishes a covariance with ``correlation**|i-j|`` (EM only)."""

    id: str
    experiment: str
    sqrts: int
    sqrts_text: str
    lumi: float
    lumi_text: str
    results: tuple[str, ...]
    regions: tuple[SignalRegion, ...]
    ul_txnames: tuple[str, ...] = ()
    ul_unit: str = "fb"
    correlation: float = 0.0


def _sr(name: str, b: float, db: float, cuts: tuple[float, float, float, float], **eps: float):
    return SignalRegion(name, b, db, Cuts(*cuts), dict(eps))


ANALYSES: tuple[Analysis, ...] = (
    Analysis(
        "SYNTH-ATLAS-13-01", "ATLAS", 13, "13*TeV", 139.0, "139/fb", ("UL", "EM"),
        (
            _sr("SR-tN-low", 210, 25, (400, 120, 250, 80), T2tt=0.10, T2bb=0.02),
            _sr("SR-tN-med", 48, 7.5, (700, 120, 450, 100), T2tt=0.09, T2bb=0.01),
            _sr("SR-tN-high", 9.6, 2.2, (1000, 120, 700, 120), T2tt=0.08),
            _sr("SR-bN", 35, 6.0, (600, 150, 300, 100), T2bb=0.15, T2tt=0.01),
        ),
        ul_txnames=("T2tt", "T2bb"), ul_unit="fb", correlation=0.5,
    ),
    Analysis(
        "SYNTH-ATLAS-13-02", "ATLAS", 13, "13*TeV", 139.0, "139/fb", ("EM",),
        (
            _sr("SR-2j-1200", 150, 18, (500, 120, 300, 120), T2=0.20, T1=0.05),
            _sr("SR-2j-1600", 30, 4.5, (850, 120, 550, 150), T2=0.18, T1=0.06),
            _sr("SR-2j-2100", 4.1, 1.2, (1200, 150, 900, 150), T2=0.15, T1=0.05),
            _sr("SR-4j-1400", 45, 7.0, (800, 150, 500, 150), T1=0.22, T2=0.04),
            _sr("SR-6j-2200", 3.2, 1.0, (1500, 150, 1000, 200), T1=0.18),
        ),
    ),
    Analysis(
        "SYNTH-ATLAS-13-03", "ATLAS", 13, "13.0*TeV", 139.0, "139./fb", ("UL",),
        (
            _sr("SR-WZ-low", 120, 15, (250, 60, 150, 40), TChiWZ=0.012),
            _sr("SR-WZ-high", 4.2, 1.3, (500, 80, 350, 80), TChiWZ=0.018),
            _sr("SR-SF-low", 40, 6.0, (180, 50, 100, 40), TSlepSlep=0.14),
            _sr("SR-SF-high", 3.0, 1.0, (400, 80, 280, 80), TSlepSlep=0.18),
        ),
        ul_txnames=("TChiWZ", "TSlepSlep"), ul_unit="fb",
    ),
    Analysis(
        "SYNTH-CMS-13-01", "CMS", 13, "13*TeV", 137.0, "137/fb", ("UL",),
        (
            _sr("HT-low-0b", 900, 60, (500, 150, 300, 100),
                T1=0.04, T2=0.10, T2tt=0.02, T2bb=0.05, T1tttt=0.01, T1bbbb=0.01),
            _sr("HT-high-0b", 40, 6.0, (1000, 150, 600, 150),
                T1=0.12, T2=0.16, T2tt=0.03, T2bb=0.06, T1tttt=0.02, T1bbbb=0.02),
            _sr("Nj-high-2b", 12, 2.5, (1100, 150, 700, 150), T1tttt=0.14, T1bbbb=0.16, T2tt=0.05, T1=0.01),
            _sr("Nj-med-1b", 60, 8.0, (600, 150, 400, 120), T2tt=0.08, T2bb=0.10, T1bbbb=0.06, T1tttt=0.05),
            _sr("HT-vhigh", 3.5, 1.0, (1600, 150, 1100, 200), T1=0.15, T2=0.10, T1tttt=0.08, T1bbbb=0.10),
        ),
        ul_txnames=("T1", "T2", "T2tt", "T2bb", "T1tttt", "T1bbbb"), ul_unit="pb",
    ),
    Analysis(
        "SYNTH-CMS-13-02", "CMS", 13, "13.0*TeV", 137.0, "137/fb", ("EM",),
        (
            _sr("SR-3l-low", 90, 12, (200, 60, 120, 40), TChiWZ=0.015),
            _sr("SR-3l-high", 6.5, 1.6, (450, 80, 300, 80), TChiWZ=0.02),
            _sr("SR-2l-mt2-low", 25, 4.0, (150, 50, 100, 40), TSlepSlep=0.15, TChiWZ=0.003),
            _sr("SR-2l-mt2-high", 2.8, 0.9, (350, 80, 250, 80), TSlepSlep=0.20),
        ),
        correlation=0.3,
    ),
    Analysis(
        "SYNTH-ATLAS-8-01", "ATLAS", 8, "8.0*TeV", 20.3, "20.3/fb", ("UL",),
        (
            _sr("SR-A-2j", 120, 15, (300, 100, 200, 80), T2=0.20, T1=0.06),
            _sr("SR-B-2j-tight", 8.0, 2.0, (650, 120, 450, 120), T2=0.15, T1=0.05),
            _sr("SR-C-4j", 20, 4.0, (500, 120, 300, 100), T1=0.20, T2=0.05),
            _sr("SR-E-6j", 3.5, 1.1, (800, 150, 500, 150), T1=0.15),
        ),
        ul_txnames=("T1", "T2"), ul_unit="fb",
    ),
    Analysis(
        "SYNTH-CMS-8-01", "CMS", 8, "8.0*TeV", 19.5, "19.5/fb", ("EM",),
        (
            _sr("SR-1b-MET", 80, 10, (300, 80, 200, 80), T2bb=0.12, T2tt=0.04, T1bbbb=0.03),
            _sr("SR-2b-HT", 15, 3.0, (500, 100, 300, 100), T2bb=0.08, T1bbbb=0.15, T1tttt=0.08, T2tt=0.03),
            _sr("SR-1l-tt", 25, 4.5, (450, 100, 300, 100), T2tt=0.10, T1tttt=0.10),
        ),
    ),
    Analysis(
        "SYNTH-CMS-8-02", "CMS", 8, "8*TeV", 19.5, "19.5/fb", ("UL",),
        (
            _sr("SR-3l", 35, 6.0, (200, 60, 120, 40), TChiWZ=0.015),
            _sr("SR-2l", 15, 3.0, (200, 50, 120, 40), TSlepSlep=0.15),
        ),
        ul_txnames=("TChiWZ", "TSlepSlep"), ul_unit="pb",
    ),
)


@dataclass(frozen=True)
class Production:
    """A truth pair-production channel decaying 100% into ``txname`` at (mother, lsp) GeV, with
    reference cross sections ``sigma_ref`` (fb, per sqrt(s) in TeV) and signal strength ``kappa``."""

    label: str
    txname: str
    mother: float
    lsp: float
    sigma_ref: dict[int, float]
    kappa: float
    reference: str = ""

    def sigma(self, sqrts: int) -> float:
        """Injected cross section times branching ratio (fb)."""
        return self.kappa * self.sigma_ref[sqrts]


TRUTH: tuple[Production, ...] = (
    Production(
        "stop pair (1100 GeV) -> t t + LSP (100 GeV)", "T2tt", 1100.0, 100.0,
        {13: 3.35, 8: 0.1797}, 0.25,
        "NNLO+NNLL stop-pair tables (LHC SUSY xsec WG): 0.335E-02 pb (13 TeV), 0.000179699 pb (8 TeV)",
    ),
    Production(
        "one light-flavour squark pair (800 GeV) -> q q + LSP (100 GeV)", "T2", 800.0, 100.0,
        {13: 32.8, 8: 2.841}, 0.045,
        "one tenth of the 10-fold degenerate squark-antisquark tables: 3.28E-01 pb (13 TeV), "
        "0.0284146 pb (8 TeV)",
    ),
)


# ---------------------------------------------------------------------------------------------
# Numbers derived from the specification
# ---------------------------------------------------------------------------------------------


def efficiency(region: SignalRegion, txname: str, mother: np.ndarray, lsp: np.ndarray) -> np.ndarray:
    """Signal efficiency (fraction of produced events) of ``txname`` in ``region`` at the given
    mother and LSP masses (GeV); zero for txnames the SR does not select."""
    cuts = region.cuts
    eps = region.eps_max.get(txname, 0.0)
    mother = np.asarray(mother, dtype=float)
    lsp = np.asarray(lsp, dtype=float)
    splitting_turn_on = special.expit((mother - lsp - cuts.dm0) / cuts.wdm)
    mother_turn_on = special.expit((mother - cuts.m0) / cuts.wm)
    return eps * splitting_turn_on * mother_turn_on


def injected_signal(analysis: Analysis, region: SignalRegion) -> float:
    """Expected truth-model signal count in ``region`` (events)."""
    return sum(
        prod.sigma(analysis.sqrts)
        * analysis.lumi
        * float(efficiency(region, prod.txname, prod.mother, prod.lsp))
        for prod in TRUTH
    )


def background_covariance(analysis: Analysis) -> np.ndarray:
    """Background covariance (events^2): ``correlation**|i-j| * bgError_i * bgError_j``."""
    errors = np.array([r.bg_error for r in analysis.regions])
    index = np.arange(len(errors))
    rho = analysis.correlation ** np.abs(index[:, None] - index[None, :])
    return rho * np.outer(errors, errors)


@dataclass(frozen=True)
class RegionResult:
    """Generated numbers of one SR: observed count and 95% CL limits on the signal (events)."""

    region: SignalRegion
    observed: int
    limit_observed: float
    limit_expected: float


def draw_observed(analysis: Analysis, uniforms: np.ndarray) -> np.ndarray:
    """Observed counts, shape (..., n_SR), from uniforms of shape (..., 2 n_SR): the first n_SR
    shift the backgrounds (correlated Gaussian, clipped at zero), the others draw the Poisson
    counts, both by inversion."""
    n_regions = len(analysis.regions)
    uniforms = np.asarray(uniforms, dtype=float)
    z = special.ndtri(uniforms[..., :n_regions])
    shift = z @ np.linalg.cholesky(background_covariance(analysis)).T
    backgrounds = np.array([r.background for r in analysis.regions])
    signals = np.array([injected_signal(analysis, r) for r in analysis.regions])
    means = signals + np.maximum(0.0, backgrounds + shift)
    return np.maximum(stats.poisson.ppf(uniforms[..., n_regions:], means), 0).astype(np.int64)


def region_results(analysis: Analysis, rng: np.random.Generator) -> list[RegionResult]:
    """Observed counts and SR limits of ``analysis``, consuming 2 uniforms per SR from ``rng``."""
    uniforms = rng.random(2 * len(analysis.regions))
    observed = [int(n) for n in draw_observed(analysis, uniforms)]
    return [
        RegionResult(
            region,
            n,
            upper_limit_events(n, region.background, region.bg_error),
            expected_upper_limit_events(region.background, region.bg_error),
        )
        for region, n in zip(analysis.regions, observed)
    ]


def upper_limit_maps(
    analysis: Analysis, results: list[RegionResult], txname: str, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected 95% CL cross-section limits (fb) of ``txname`` at ``points``
    (mother, lsp in GeV), combined over the SRs as described in the module docstring."""
    sensitivity = np.array(
        [
            efficiency(res.region, txname, points[:, 0], points[:, 1]) * analysis.lumi / res.limit_expected
            for res in results
        ]
    )
    powered = sensitivity**UL_SENSITIVITY_POWER
    total = powered.sum(axis=0)
    expected = total ** (-1.0 / UL_SENSITIVITY_POWER)
    log_ratio = np.array([math.log(res.limit_observed / res.limit_expected) for res in results])
    observed = expected * np.exp((powered * log_ratio[:, None]).sum(axis=0) / total)
    return observed, expected


# ---------------------------------------------------------------------------------------------
# Writing the text files
# ---------------------------------------------------------------------------------------------


def _mass(value: float) -> str:
    return f"{value:.4E}*GeV"


def _point(mother: float, lsp: float) -> str:
    branch = f"[{_mass(mother)},{_mass(lsp)}]"
    return f"[[{branch},{branch}]"


def _map_lines(key: str, points: np.ndarray, values: list[str]) -> str:
    rows = [f"{_point(m, l)},{v}]" for (m, l), v in zip(points, values)]
    return f"{key}: [" + ",\n".join(rows) + "]\n"


def _efficiency_text(value: float) -> str:
    return repr(float(f"{value:.5g}"))


def _number(value: float) -> str:
    return f"{value:g}"


def _txname_header(analysis: Analysis, txname: str) -> str:
    spec = TXNAMES[txname]
    return (
        f"txName: {txname}\n"
        f"constraint: {spec.constraint}\n"
        f"condition: {spec.condition}\n"
        f"conditionDescription: {spec.condition_description}\n"
        f"figureUrl: https://example.invalid/synthetic/{analysis.id}/{txname}.png\n"
        "source: tdmcmc-synthetic\n"
        "validated: True\n"
        "axes: [[x, y], [x, y]]\n"
        "finalState: ['MET', 'MET']\n"
    )


def _global_info(analysis: Analysis, seed: int, kind: str) -> str:
    text = (
        f"# SYNTHETIC {kind} result written by tdmcmc.models.database.synthetic (seed {seed}): "
        "invented numbers, NOT LHC data.\n"
        f"id: {analysis.id}\n"
        f"sqrts: {analysis.sqrts_text}\n"
        f"lumi: {analysis.lumi_text}\n"
        f"url: https://example.invalid/synthetic/{analysis.id}\n"
        "implementedBy: tdmcmc synthetic generator\n"
        f"lastUpdate: {LAST_UPDATE}\n"
    )
    if kind == "EM" and analysis.correlation > 0.0:
        order = ", ".join(f'"{r.name}"' for r in analysis.regions)
        rows = ", ".join(
            "[" + ", ".join(f"{c:.6g}" for c in row) + "]" for row in background_covariance(analysis)
        )
        text += f"datasetOrder: {order}\ncovariance: [{rows}]\n"
    return text


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _analysis_dir(outdir: Path, analysis: Analysis, kind: str) -> Path:
    folder = analysis.id + ("-eff" if kind == "EM" else "")
    return outdir / f"{analysis.sqrts}TeV" / analysis.experiment / folder


def write_efficiency_result(outdir: Path, analysis: Analysis, results: list[RegionResult], seed: int) -> None:
    """Write the ``<id>-eff`` folder: globalInfo, one dataset per SR, one map per selected txname."""
    base = _analysis_dir(outdir, analysis, "EM")
    _write(base / "globalInfo.txt", _global_info(analysis, seed, "EM"))
    for res in results:
        region = res.region
        _write(
            base / region.name / "dataInfo.txt",
            f"dataId: {region.name}\n"
            "dataType: efficiencyMap\n"
            f"observedN: {res.observed}\n"
            f"expectedBG: {_number(region.background)}\n"
            f"bgError: {_number(region.bg_error)}\n"
            f"upperLimit: {res.limit_observed / analysis.lumi:.4g}*fb\n"
            f"expectedUpperLimit: {res.limit_expected / analysis.lumi:.4g}*fb\n",
        )
        for txname in sorted(region.eps_max):
            points = TXNAMES[txname].grids[analysis.sqrts].points()
            values = efficiency(region, txname, points[:, 0], points[:, 1])
            _write(
                base / region.name / f"{txname}.txt",
                _txname_header(analysis, txname)
                + _map_lines("efficiencyMap", points, [_efficiency_text(v) for v in values]),
            )


def write_upper_limit_result(
    outdir: Path, analysis: Analysis, results: list[RegionResult], seed: int
) -> None:
    """Write the UL folder: globalInfo, ``data/dataInfo.txt`` and observed + expected UL maps."""
    base = _analysis_dir(outdir, analysis, "UL")
    _write(base / "globalInfo.txt", _global_info(analysis, seed, "UL"))
    _write(base / "data" / "dataInfo.txt", "dataId: None\ndataType: upperLimit\n")
    scale = 1.0e-3 if analysis.ul_unit == "pb" else 1.0
    for txname in analysis.ul_txnames:
        points = TXNAMES[txname].grids[analysis.sqrts].points()
        observed, expected = upper_limit_maps(analysis, results, txname, points)
        observed_text = [f"{v * scale:.4E}*{analysis.ul_unit}" for v in observed]
        expected_text = [f"{v * scale:.4E}*{analysis.ul_unit}" for v in expected]
        _write(
            base / "data" / f"{txname}.txt",
            _txname_header(analysis, txname)
            + _map_lines("upperLimits", points, observed_text)
            + _map_lines("expectedUpperLimits", points, expected_text),
        )


def _readme(seed: int, all_results: dict[str, list[RegionResult]]) -> str:
    lines = [
        "==========================================",
        "tdmcmc synthetic demo database (NOT LHC data)",
        "==========================================",
        "",
        f"Version ``{VERSION}``, written by ``tdmcmc.models.database.synthetic`` with seed {seed}.",
        "Every number in this database is invented. It has the folder layout, keys, units and number",
        "formatting of the SModelS text database (v1/v2 bracket grammar, as in release 1.2.4), so",
        "that tdmcmc runs on a fresh machine without downloading anything. Do not use it for physics.",
        "The analysis ids (``SYNTH-<experiment>-<sqrts>-<nn>``) are not those of real analyses.",
        "",
        "Regenerate (byte for byte) with::",
        "",
        "    python -m tdmcmc.models.database.synthetic OUTDIR --seed SEED",
        "",
        "The module docstring documents the efficiency model, the 95% CL CLs limits and how the",
        "upper-limit maps are derived from signal regions.",
        "",
        "Injected truth model",
        "====================",
        "",
        "The observed counts contain a signal from this model (cross section x BR in fb):",
        "",
    ]
    for prod in TRUTH:
        lines.append(
            f"* {prod.label}: txname {prod.txname} at masses [[{prod.mother:g}, {prod.lsp:g}], "
            f"[{prod.mother:g}, {prod.lsp:g}]] GeV; kappa = {prod.kappa:g} times the reference "
            f"cross section; sigma x BR = {prod.sigma(13):.4g} fb (13 TeV), {prod.sigma(8):.4g} fb (8 TeV). "
            f"Reference: {prod.reference}."
        )
    lines += [
        "",
        "Signal regions",
        "==============",
        "",
        "Expected truth signal s, background b +- bgError and observed count n (events);",
        "UL results list their unpublished SRs, from which their maps are derived.",
        "",
    ]
    for analysis in ANALYSES:
        folders = ", ".join(str(_analysis_dir(Path(), analysis, k)) for k in analysis.results)
        lines.append(f"* ``{analysis.id}`` ({folders}):")
        lines.append("")
        for res in all_results[analysis.id]:
            r = res.region
            s = injected_signal(analysis, r)
            z = (res.observed - r.background) / math.sqrt(r.background + r.bg_error**2)
            lines.append(
                f"  - {r.name}: s = {s:.3g}, b = {_number(r.background)} +- {_number(r.bg_error)}, "
                f"n = {res.observed} ((n - b) / sqrt(b + bgError^2) = {z:+.2f})"
            )
        lines.append("")
    return "\n".join(lines)


def generate(outdir: Path, seed: int = DEFAULT_SEED) -> Path:
    """Write the synthetic database into ``outdir`` (must be absent or empty) and return it."""
    outdir = Path(outdir)
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise UserError(f"synthetic database: output folder {outdir} exists and is not empty")
    rng = np.random.Generator(np.random.PCG64(seed))
    all_results = {}
    for analysis in ANALYSES:
        results = region_results(analysis, rng)
        all_results[analysis.id] = results
        if "EM" in analysis.results:
            write_efficiency_result(outdir, analysis, results, seed)
        if "UL" in analysis.results:
            write_upper_limit_result(outdir, analysis, results, seed)
    _write(outdir / "version", VERSION + "\n")
    _write(outdir / "README.rst", _readme(seed, all_results))
    return outdir


def demo_database_path() -> Path:
    """Installed location of the committed demo database (``tdmcmc/models/demo_db``)."""
    return Path(__file__).resolve().parent.parent / "demo_db"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tdmcmc.models.database.synthetic OUTDIR [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m tdmcmc.models.database.synthetic",
        description="Write the synthetic SModelS-format demo database (not LHC data).",
    )
    parser.add_argument("outdir", type=Path, help="output folder (absent or empty)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    args = parser.parse_args(argv)
    try:
        generate(args.outdir, args.seed)
    except UserError as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
