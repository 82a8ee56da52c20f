"""Fit the cross-section parametrisations to the reference tables and check them.

Run ``python -m tdmcmc.models.protomodel.xsec_fit`` to read the tables under
``$TDMCMC_SHARED/data/raw/xsec`` (default ``../shared`` next to the repository) and write
``xsec_coefficients.json``; add ``--check`` to only compare the packaged coefficients with the
tables (largest relative deviation per process and √s, inside the range and when extrapolating).

Fit form: ln(σ/fb) = Σ_k c_k T_k(t), t = 2 (ln m − ln m_lo)/(ln m_hi − ln m_lo) − 1, by least squares
on ln σ over the table points; two-mass processes use a tensor product T_j(t_1) T_k(t_2). The
degree is the smallest one whose largest deviation beyond the table's printed precision is at most
``TARGET`` (1%); tables whose scatter does not allow that get the degree with the smallest such
deviation, with no more than one parameter per three points and degree <= 12. Only fits whose σ
falls with every mass over the whole range are accepted (this rejects high-degree fits whose
derivative oscillates between table points and at the edges, where it sets the extrapolation).
Units: masses GeV, σ fb.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev

from tdmcmc.errors import UserError

from .space import COEFFICIENTS
from .xsec import XsecFits

TARGET = 0.01  # aim well inside the 2% accuracy goal
MAX_DEGREE = 12
UNITS_FB = {"pb": 1000.0, "fb": 1.0}


@dataclass(frozen=True)
class Table:
    """One reference table: path under data/raw/xsec, unit of its σ column, QCD order, fit range (GeV)."""

    path: str
    unit: str
    order: str
    fit_range: tuple[float, float] | None = None
    note: str = ""


@dataclass(frozen=True)
class Grid:
    """An NLL-fast grid (columns: process, m_squark, m_gluino, ..., NLO+NLL in pb at index 13)."""

    path: str
    order: str = "NLO+NLL"
    note: str = ""


@dataclass(frozen=True)
class Derived:
    """A table at another √s rescaled by the σ(√s')/σ(√s) ratio of a related fitted process
    (for the higgsino channels at 8 TeV, which have no table of their own)."""

    table: Table
    ratio_of: str  # process whose fitted ratio σ(to_sqrts)/σ(from_sqrts) is used
    from_sqrts: int  # √s of ``table``
    to_sqrts: int
    order: str = "NLO+NLL (rescaled)"
    note: str = ""

    @property
    def path(self) -> str:
        return self.table.path


@dataclass(frozen=True)
class Process:
    description: str
    tables: dict[int, Table | Grid | Derived] = field(default_factory=dict)
    masses: tuple[str, ...] = ("m",)


PM, MORE, NLLFAST = "protomodels-xsecTables", "smodels-utils-morexsecs", "nllfast"

_C1C1_50 = ("the 50 GeV point, absent from the smodels-utils copy of the table, breaks the trend (log-log "
            "slope 5.2 below 100 GeV against 3.6 above); the fit starts at 100 GeV")



def _higgsino(path: str, wino: str) -> dict[int, Table | Derived]:
    table = Table(path, "fb", "NLO+NLL")
    return {8: Derived(table, wino, 13, 8, note=f"no 8 TeV higgsino table: the 13 TeV table times the fitted "
                                             f"8/13 TeV ratio of {wino} at the same mass"),
            13: table}


PROCESSES: dict[str, Process] = {
    "gluino_pair": Process(
        "gluino pair, squarks decoupled (LHC SUSY xsec WG)",
        {8: Table(f"{PM}/xsecgluino8.txt", "pb", "NNLOapprox+NNLL"),
         13: Table(f"{PM}/xsecgluino13.txt", "pb", "NNLOapprox+NNLL", (500.0, 3000.0),
                   "the table switches from NLO+NLL to NNLOapprox+NNLL at 500 GeV (a 20% step); "
                   "the fit uses the NNLL part and extrapolates it below 500 GeV")}),
    "squark_antisquark_10flavours": Process(
        "squark-antisquark summed over 10 degenerate light squarks (u,d,s,c,b; L,R), gluino decoupled",
        {8: Table(f"{PM}/xsecsquark8.txt", "pb", "NNLOapprox+NNLL"),
         13: Table(f"{PM}/xsecsquark13.txt", "pb", "NNLOapprox+NNLL")}),
    "stop_pair": Process(
        "stop-antistop (= sbottom-antisbottom), gluino decoupled",
        {8: Table(f"{PM}/xsecstop8.txt", "pb", "NNLOapprox+NNLL"),
         13: Table(f"{PM}/xsecstop13.txt", "pb", "NNLOapprox+NNLL")}),
    "squark_gluino_10flavours": Process(
        "squark-gluino + antisquark-gluino summed over 10 light squarks (NLL-fast, MSTW2008)",
        {8: Grid(f"{NLLFAST}/nllfast-2.1/sg_nllnlo_mstw2008.grid"),
         13: Grid(f"{NLLFAST}/nllfast-3.1/sg_nllnlo_mstw2008_13TeV.grid")},
        masses=("m_squark", "m_gluino")),
    "slepton_L_pair": Process(
        "left-handed slepton pair, one generation",
        {8: Table(f"{MORE}/xsecslepLslepL8.txt", "fb", "NLO+NLL"),
         13: Table(f"{MORE}/xsecslepLslepL13.txt", "pb", "NLO+NLL")}),
    "wino_C1pC1m": Process(
        "wino-like chargino pair C1+ C1-",
        {8: Table(f"{PM}/xsecC1C18.txt", "fb", "NLO+NLL", (100.0, 1000.0), _C1C1_50),
         13: Table(f"{PM}/xsecC1C113.txt", "fb", "NLO+NLL", (100.0, 2000.0), _C1C1_50)}),
    "wino_N2C1p": Process(
        "wino-like N2 C1+ (degenerate N2, C1; mass = mean mass of the pair)",
        {8: Table(f"{PM}/xsecN2C1p8.txt", "pb", "NLO+NLL"),
         13: Table(f"{PM}/xsecN2C1p13.txt", "fb", "NLO+NLL")}),
    "wino_N2C1m": Process(
        "wino-like N2 C1- (degenerate N2, C1; mass = mean mass of the pair)",
        {8: Table(f"{PM}/xsecN2C1m8.txt", "pb", "NLO+NLL"),
         13: Table(f"{PM}/xsecN2C1m13.txt", "fb", "NLO+NLL")}),
    "higgsino_C1pC1m": Process(
        "higgsino-like chargino pair C1+ C1-",
        _higgsino(f"{MORE}/xsecC1C113hino.txt", "wino_C1pC1m")),
    "higgsino_N2C1p": Process(
        "higgsino-like N2 C1+ (degenerate; mass = mean mass of the pair)",
        _higgsino(f"{MORE}/xsecN2C1p13hino.txt", "wino_N2C1p")),
    "higgsino_N2C1m": Process(
        "higgsino-like N2 C1- (degenerate; mass = mean mass of the pair)",
        _higgsino(f"{MORE}/xsecN2C1m13hino.txt", "wino_N2C1m")),
}


@dataclass(frozen=True)
class Points:
    """Reference points: masses (n_points, n_masses) GeV, σ fb, relative half-unit of the last printed digit."""

    masses: np.ndarray
    xsec: np.ndarray
    rounding: np.ndarray


def shared_xsec_dir() -> Path:
    """$TDMCMC_SHARED/data/raw/xsec, or ../shared/data/raw/xsec next to the repository."""
    root = os.environ.get("TDMCMC_SHARED")
    base = Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared"
    return base / "data" / "raw" / "xsec"


def _rounding(token: str) -> float:
    """Relative half-unit of the last printed digit of a number token ('0.07' -> 0.0714)."""
    try:
        number = Decimal(token)
    except InvalidOperation:
        return 0.0
    if number == 0:
        return 0.0
    return float(Decimal(5).scaleb(number.as_tuple().exponent - 1) / abs(number))


def read_table(root: Path, table: Table) -> Points:
    """Mass (first number) and σ (second number) per data line; '#' lines, text headers and 'GeV' skipped."""
    path = root / table.path
    masses, xsecs, rounding = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read cross-section table ({exc.strerror})") from None
    header = []
    for number, line in enumerate(lines, 1):
        tokens = [t for t in line.split() if t != "GeV"]
        if not tokens or line.lstrip().startswith("#"):
            header.append(line)
            continue
        try:
            mass, xsec = float(tokens[0]), float(tokens[1])
        except (ValueError, IndexError):
            if masses:  # text after the data starts is an error, a text header is not
                raise UserError(f"{path}:{number}: expected 'mass xsec ...', got {line!r}") from None
            header.append(line)
            continue
        masses.append([mass])
        xsecs.append(xsec * UNITS_FB[table.unit])
        rounding.append(_rounding(tokens[1]))
    _check_unit(path, table.unit, header)
    return _sorted_points(path, masses, xsecs, rounding)


def _check_unit(path: Path, unit: str, header: list[str]) -> None:
    """Guard against unit slips (the original read an fb table as pb): if the header names one unit,
    it must be the configured one."""
    named = set(re.findall(r"\b(pb|fb)\b", " ".join(header).lower()))
    if len(named) == 1 and unit not in named:
        raise UserError(f"{path}: header says {named.pop()}, the fit configuration says {unit}")


def read_grid(root: Path, grid: Grid) -> Points:
    """NLL-fast grid rows 'sg m_squark m_gluino ... NLO+NLL(pb) ...' (column 13)."""
    path = root / grid.path
    masses, xsecs, rounding = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        tokens = line.split()
        if len(tokens) < 14 or tokens[0] == "process":
            continue
        try:
            masses.append([float(tokens[1]), float(tokens[2])])
            xsecs.append(float(tokens[13]) * UNITS_FB["pb"])
        except ValueError:
            raise UserError(f"{path}:{number}: malformed NLL-fast grid line {line!r}") from None
        rounding.append(_rounding(tokens[13]))
    return _sorted_points(path, masses, xsecs, rounding)


def _sorted_points(path: Path, masses: list, xsecs: list, rounding: list) -> Points:
    if not masses:
        raise UserError(f"{path}: no data lines")
    m, x, r = np.asarray(masses), np.asarray(xsecs), np.asarray(rounding)
    if np.any(x <= 0) or np.any(m <= 0):
        raise UserError(f"{path}: masses and cross sections must be positive")
    order = np.lexsort(m.T[::-1])
    return Points(m[order], x[order], r[order])


def read_points(root: Path, source: Table | Grid | Derived, fits: XsecFits | None = None) -> Points:
    """The reference points of a source; a Derived source needs the fits of its ratio process."""
    if isinstance(source, Grid):
        return read_grid(root, source)
    if isinstance(source, Table):
        return read_table(root, source)
    points = read_table(root, source.table)
    numerator, denominator = (fits.fit(source.ratio_of, s) for s in (source.to_sqrts, source.from_sqrts))
    log_ratio = numerator.log_xsec(list(points.masses.T)) - denominator.log_xsec(list(points.masses.T))
    return Points(points.masses, points.xsec * np.exp(log_ratio), points.rounding)


def _scaled(log_m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return 2.0 * (log_m - lo) / (hi - lo) - 1.0


def _design(ts: np.ndarray, degree: int) -> np.ndarray:
    if ts.shape[1] == 1:
        return chebyshev.chebvander(ts[:, 0], degree)
    return chebyshev.chebvander2d(ts[:, 0], ts[:, 1], [degree, degree])


def _excess(fit_log: np.ndarray, points: Points) -> float:
    """Largest |σ_fit/σ_table − 1| beyond the table's printed precision."""
    deviation = np.abs(np.exp(fit_log) / points.xsec - 1.0)
    return float(np.max(np.maximum(deviation - points.rounding, 0.0)))


def fit_points(points: Points, domain: np.ndarray) -> tuple[np.ndarray, int]:
    """Least-squares Chebyshev fit of ln σ; returns (coefficients, degree) chosen as in the module doc."""
    log_lo, log_hi = np.log(domain[:, 0]), np.log(domain[:, 1])
    ts = _scaled(np.log(points.masses), log_lo, log_hi)
    y = np.log(points.xsec)
    n_masses = points.masses.shape[1]
    results = []
    for degree in range(2, MAX_DEGREE + 1):
        if (degree + 1) ** n_masses * 3 > len(y):
            break
        design = _design(ts, degree)
        flat, *_ = np.linalg.lstsq(design, y, rcond=None)
        coefficients = flat.reshape((degree + 1,) * n_masses)
        if not _decreasing(coefficients):
            continue
        excess = _excess(design @ flat, points)
        results.append((excess, degree, coefficients))
        if excess <= TARGET:
            break
    if not results:
        raise UserError("no polynomial degree gives a cross section falling with the mass")
    excess, degree, coefficients = min(results, key=lambda r: (r[0] > TARGET, r[0] if r[0] > TARGET else r[1]))
    return coefficients, degree


def _decreasing(coefficients: np.ndarray, n: int = 201) -> bool:
    """True if ln σ falls with every mass over the whole fit range (checked on a dense grid).

    High degrees can match the table points while the derivative swings wildly between them and at
    the edges, where it sets the extrapolation; such fits are rejected."""
    t = np.linspace(-1.0, 1.0, n)
    for axis in range(coefficients.ndim):
        derivative = chebyshev.chebder(coefficients, axis=axis)
        values = (chebyshev.chebval(t, derivative) if coefficients.ndim == 1
                  else chebyshev.chebgrid2d(t, t, derivative))
        if np.any(values >= 0):
            return False
    return True


def fit_process(root: Path, name: str, sqrts: int, fits: XsecFits | None = None) -> dict:
    """Fit one process at one √s; returns the JSON entry (coefficients, domain, source, accuracy).
    ``fits`` provides the ratio process of a Derived source."""
    source = PROCESSES[name].tables[sqrts]
    points = read_points(root, source, fits)
    inside = _inside(points, getattr(source, "fit_range", None))
    fitted = Points(points.masses[inside], points.xsec[inside], points.rounding[inside])
    domain = np.stack([fitted.masses.min(axis=0), fitted.masses.max(axis=0)], axis=1)
    coefficients, degree = fit_points(fitted, domain)
    table = source.table if isinstance(source, Derived) else source
    entry = {
        "source": source.path, "unit_in_table": getattr(table, "unit", "pb"), "order": source.order,
        "note": source.note, "n_points": int(inside.sum()), "degree": degree,
        "domain_GeV": domain.tolist(), "coefficients": coefficients.tolist(),
    }
    if isinstance(source, Derived):
        entry["rescaled_from"] = {"sqrts": source.from_sqrts, "ratio_of": source.ratio_of}
    return entry


def _inside(points: Points, fit_range: tuple[float, float] | None) -> np.ndarray:
    if fit_range is None:
        return np.ones(len(points.xsec), dtype=bool)
    lo, hi = fit_range
    return np.all((points.masses >= lo) & (points.masses <= hi), axis=1)


def fit_all(root: Path) -> dict:
    """Fit every process at every √s with a table; returns the coefficients-file dictionary."""
    data: dict = {
        "format": 1,
        "units": {"mass": "GeV", "xsec": "fb"},
        "form": "ln(xsec/fb) = chebval(t, coefficients), t = 2 (ln m - ln lo)/(ln hi - ln lo) - 1; "
                "continued from the edges linearly in ln m below lo, linearly in m above hi",
        "generated_by": "python -m tdmcmc.models.protomodel.xsec_fit",
        "tables_root": "data/raw/xsec (see data/SOURCES.md section 3)",
        "processes": {},
    }
    for name, process in PROCESSES.items():
        entry = {"description": process.description, "masses": list(process.masses), "sqrts": {}}
        data["processes"][name] = entry
        # tables first: a Derived source uses fits made earlier in this loop
        for sqrts in sorted(process.tables, key=lambda s: isinstance(process.tables[s], Derived)):
            entry["sqrts"][str(sqrts)] = fit_process(root, name, sqrts, XsecFits(data, "fit in progress"))
        entry["sqrts"] = dict(sorted(entry["sqrts"].items(), key=lambda item: int(item[0])))
    return data


# ---------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Deviation:
    """Largest relative deviations |σ_fit/σ_table − 1| of one process at one √s."""

    process: str
    sqrts: int
    n_points: int
    inside: float  # over the fit range
    p95: float  # 95th percentile over the fit range (robust against isolated table glitches)
    beyond_rounding: float  # over the fit range, after allowing the table's printed precision
    outside_table: float | None  # table points outside the fit range (e.g. the NLO+NLL gluino part)
    worst_mass: tuple[float, ...]


def check(root: Path, fits: XsecFits) -> list[Deviation]:
    """Compare packaged fits (evaluated through :mod:`.xsec`) with every table point."""
    report = []
    for name, process in PROCESSES.items():
        for sqrts, source in sorted(process.tables.items()):
            fit = fits.fit(name, sqrts)
            if fit is None:
                raise UserError(f"{fits.source}: no fit for {name} at {sqrts} TeV; rerun xsec_fit")
            points = read_points(root, source, fits)
            sigma = np.exp(fit.log_xsec(list(points.masses.T)))
            deviation = np.abs(sigma / points.xsec - 1.0)
            inside = fit.in_range(list(points.masses.T))
            beyond = np.maximum(deviation - points.rounding, 0.0)
            worst = int(np.argmax(np.where(inside, deviation, -1.0)))
            report.append(Deviation(
                process=name, sqrts=sqrts, n_points=len(deviation),
                inside=float(deviation[inside].max()), p95=float(np.percentile(deviation[inside], 95)),
                beyond_rounding=float(beyond[inside].max()),
                outside_table=float(deviation[~inside].max()) if np.any(~inside) else None,
                worst_mass=tuple(points.masses[worst])))
    return report


def extrapolation_check(root: Path, name: str, sqrts: int, reach: tuple[float, ...] = (1.1, 1.25)
                        ) -> dict[str, float]:
    """Accuracy of the out-of-range rules of a one-mass process: refit on the table shortened by the
    largest factor in ``reach`` at one end, evaluate through :mod:`.xsec` and return the largest
    relative deviation on held-out points up to each factor beyond the new edge
    (keys 'above x1.1', 'below /1.25', ...)."""
    source = PROCESSES[name].tables[sqrts]
    points = read_points(root, source)
    keep = _inside(points, getattr(source, "fit_range", None))
    points = Points(points.masses[keep], points.xsec[keep], points.rounding[keep])
    m = points.masses[:, 0]
    far = max(reach)
    result = {}
    for end, train in (("above", m <= m.max() / far), ("below", m >= m.min() * far)):
        sub = Points(points.masses[train], points.xsec[train], points.rounding[train])
        domain = np.stack([sub.masses.min(axis=0), sub.masses.max(axis=0)], axis=1)
        coefficients, _ = fit_points(sub, domain)
        fits = XsecFits({"processes": {name: {"sqrts": {str(sqrts): {
            "domain_GeV": domain.tolist(), "coefficients": coefficients.tolist()}}}}}, "extrapolation test")
        sigma = np.exp(fits.fit(name, sqrts).log_xsec([m]))
        deviation = np.abs(sigma / points.xsec - 1.0)
        for factor in reach:
            if end == "above":
                test = (m > domain[0, 1]) & (m <= domain[0, 1] * factor * (1 + 1e-9))
                result[f"above x{factor}"] = _max_or_nan(deviation[test])
            else:
                test = (m < domain[0, 0]) & (m >= domain[0, 0] / factor * (1 - 1e-9))
                result[f"below /{factor}"] = _max_or_nan(deviation[test])
    return result


def _max_or_nan(values: np.ndarray) -> float:
    return float(values.max()) if values.size else float("nan")


def mean_mass_rule_check(root: Path, sqrts: int) -> dict[str, float]:
    """Accuracy of the mean-mass rule for squark-gluino: σ_grid(m̄, m̄) against σ_grid(m_q, m_g).

    Returns the largest relative deviation over grid points with |m_q − m_g| ≤ 200, 500 GeV and all.
    """
    points = read_grid(root, PROCESSES["squark_gluino_10flavours"].tables[sqrts])
    diagonal = {m[0]: x for m, x in zip(points.masses, points.xsec) if m[0] == m[1]}
    masses = np.array(sorted(diagonal))
    log_diag = np.log([diagonal[m] for m in masses])
    mean = points.masses.mean(axis=1)
    inside = (mean >= masses[0]) & (mean <= masses[-1])
    rule = np.exp(np.interp(mean[inside], masses, log_diag))
    deviation = np.abs(rule / points.xsec[inside] - 1.0)
    split = np.abs(points.masses[inside, 0] - points.masses[inside, 1])
    return {f"max_dev_split<={s}": float(deviation[split <= s].max()) for s in (200, 500)} | {
        "max_dev_all": float(deviation.max())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdmcmc.models.protomodel.xsec_fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=Path, default=None, help="folder data/raw/xsec (default: shared)")
    parser.add_argument("--output", type=Path, default=COEFFICIENTS, help="coefficients file to write")
    parser.add_argument("--check", action="store_true", help="only compare the existing coefficients")
    args = parser.parse_args(argv)
    root = args.tables or shared_xsec_dir()
    try:
        if not args.check:
            data = fit_all(root)
            args.output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {args.output}")
        fits = XsecFits(json.loads(args.output.read_text(encoding="utf-8")), str(args.output))
        print(f"{'process':30s} {'TeV':>3s} {'n':>4s} {'deg':>3s} {'range GeV':>17s} {'max dev':>8s} "
              f"{'>round':>7s} {'p95':>6s} {'outside':>8s}  worst at")
        for d in check(root, fits):
            fit = fits.fit(d.process, d.sqrts)
            rng = "x".join(f"{lo:.0f}-{hi:.0f}" for lo, hi in fit.mass_range)
            outside = "" if d.outside_table is None else f"{100 * d.outside_table:7.1f}%"
            print(f"{d.process:30s} {d.sqrts:3d} {d.n_points:4d} {fit.info['degree']:3d} {rng:>17s} "
                  f"{100 * d.inside:7.2f}% {100 * d.beyond_rounding:6.2f}% {100 * d.p95:5.2f}% {outside:>8s}  "
                  f"{', '.join(f'{m:.0f}' for m in d.worst_mass)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
