"""Production cross sections of protomodel channels: fitted smooth parametrisations, numpy and PyTensor.

Each fitted *process* (e.g. ``gluino_pair`` at √s = 13 TeV) is a Chebyshev series in the scaled
logarithm of the mass(es), t = 2 (ln m − ln m_lo)/(ln m_hi − ln m_lo) − 1, fitted by least squares
to ln σ of a reference table (``xsec_fit.py``; coefficients in ``xsec_coefficients.json``). Outside
the table range σ is extrapolated, never silently zero, with value and first derivative continuous
at the edge: below the range ln σ continues linearly in ln m (a power law), above it linearly in m
(an exponential fall); :func:`in_table_range` tells whether a point is inside. The accuracy of
both rules, measured by refitting on shortened tables, is in docs/cross-sections.md. Masses are in
GeV, cross sections in fb.

A channel's σ is ``factor × process(m)``: one-mass processes take the mean mass of the pair,
two-mass processes the two masses in the order of the channel's ``pair``. κ multiplies σ per
channel (charge-conjugate channels share one κ; see :mod:`.space`).

The formula is written once against a small backend namespace (numpy or pytensor.tensor), so the
numpy values and the PyTensor graph (batched over any leading shape, differentiable with
``pytensor.grad``) come from the same code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytensor.tensor as pt
from numpy.polynomial import chebyshev

from tdmcmc.errors import UserError

from .space import COEFFICIENTS, Pair, ProductionChannel, ProtomodelSpace

_OPS = ("log", "exp", "clip", "minimum", "maximum", "stack", "ones_like", "tensordot")
NUMPY = SimpleNamespace(**{op: getattr(np, op) for op in _OPS}, asarray=lambda x: np.asarray(x, dtype=float))
PYTENSOR = SimpleNamespace(**{op: getattr(pt, op) for op in _OPS}, asarray=pt.as_tensor_variable)


@dataclass(frozen=True)
class ProcessFit:
    """ln σ(m) of one process at one √s (σ in fb, masses in GeV) as a Chebyshev series in ln m."""

    process: str
    sqrts: int
    mass_range: tuple[tuple[float, float], ...]  # table (fit) range per mass argument, GeV
    log_lo: tuple[float, ...]
    log_hi: tuple[float, ...]
    coefficients: np.ndarray
    gradients: tuple[np.ndarray, ...]  # ∂/∂t_i of the series, as coefficient arrays of the same shape
    info: Mapping[str, Any]

    @property
    def n_masses(self) -> int:
        return self.coefficients.ndim

    def log_xsec(self, masses: list[Any], xp: SimpleNamespace = NUMPY) -> Any:
        """ln(σ/fb) at the given masses (GeV), one array/tensor per mass argument, same shapes."""
        log_m = [xp.log(xp.asarray(m)) for m in masses]
        inside = [xp.clip(u, lo, hi) for u, lo, hi in zip(log_m, self.log_lo, self.log_hi)]
        bases = [_chebyshev_basis(xp, 2.0 * (u - lo) / (hi - lo) - 1.0, n)
                 for u, lo, hi, n in zip(inside, self.log_lo, self.log_hi, self.coefficients.shape)]
        value = _contract(xp, self.coefficients, bases)
        for gradient, u, uc, lo, hi in zip(self.gradients, log_m, inside, self.log_lo, self.log_hi):
            # below the range: linear in ln m (power law); above: linear in m (exponential fall),
            # both starting with the edge value and slope
            excess = xp.minimum(u - uc, 0.0) + xp.maximum(xp.exp(u - uc) - 1.0, 0.0)
            value = value + _contract(xp, gradient, bases) * (2.0 / (hi - lo)) * excess
        return value

    def in_range(self, masses: list[Any]) -> np.ndarray:
        """True where every mass lies inside the table range (numpy)."""
        inside = np.ones(np.shape(np.asarray(masses[0], dtype=float)), dtype=bool)
        for m, (lo, hi) in zip(masses, self.mass_range):
            m = np.asarray(m, dtype=float)
            inside &= (m >= lo * (1 - 1e-12)) & (m <= hi * (1 + 1e-12))
        return inside


def _chebyshev_basis(xp: SimpleNamespace, t: Any, n: int) -> Any:
    terms = [xp.ones_like(t), t]
    while len(terms) < n:
        terms.append(2.0 * t * terms[-1] - terms[-2])
    return xp.stack(terms[:n])


def _contract(xp: SimpleNamespace, coefficients: np.ndarray, bases: list[Any]) -> Any:
    """Σ c[j, k] B1[j] B2[k] (or Σ c[j] B1[j]) over the leading axis of each basis."""
    result = xp.tensordot(coefficients, bases[-1], axes=[[coefficients.ndim - 1], [0]])
    if coefficients.ndim == 2:
        result = (bases[0] * result).sum(axis=0)
    return result


class XsecFits:
    """All fitted processes of a coefficients file, by (process, √s in TeV)."""

    def __init__(self, data: Mapping[str, Any], source: str):
        self.source = source
        self.processes: dict[str, dict[str, Any]] = {}
        self.fits: dict[tuple[str, int], ProcessFit] = {}
        for name, process in data["processes"].items():
            self.processes[name] = {k: v for k, v in process.items() if k != "sqrts"}
            for sqrts, entry in process["sqrts"].items():
                coefficients = np.asarray(entry["coefficients"], dtype=float)
                gradients = tuple(_pad(chebyshev.chebder(coefficients, axis=axis), coefficients.shape)
                                  for axis in range(coefficients.ndim))
                domain = np.asarray(entry["domain_GeV"], dtype=float)
                self.fits[name, int(sqrts)] = ProcessFit(
                    process=name, sqrts=int(sqrts), mass_range=tuple(map(tuple, domain.tolist())),
                    log_lo=tuple(np.log(domain[:, 0])), log_hi=tuple(np.log(domain[:, 1])),
                    coefficients=coefficients, gradients=gradients,
                    info={k: v for k, v in entry.items() if k != "coefficients"})

    def fit(self, process: str, sqrts: int) -> ProcessFit | None:
        """The fit of a process at √s (TeV), or None where no reference table exists."""
        if process not in self.processes:
            raise UserError(f"{self.source}: unknown cross-section process {process!r}")
        return self.fits.get((process, int(sqrts)))

    def sqrts_of(self, process: str) -> tuple[int, ...]:
        """The √s values (TeV) for which a process has a fit."""
        return tuple(sorted(s for p, s in self.fits if p == process))


def _pad(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out


@cache
def load_fits(path: str | Path | None = None) -> XsecFits:
    """Read a coefficients file (default: the packaged ``xsec_coefficients.json``)."""
    path = Path(path) if path is not None else COEFFICIENTS
    try:
        with Path(path).open(encoding="utf-8") as stream:
            return XsecFits(json.load(stream), str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: cannot read cross-section coefficients ({exc})") from None


def _process_masses(fit: ProcessFit, m_a: Any, m_b: Any) -> list[Any]:
    return [(m_a + m_b) / 2.0] if fit.n_masses == 1 else [m_a, m_b]


def channel_xsec(channel: ProductionChannel, m_a: Any, m_b: Any, sqrts: int,
                 fits: XsecFits | None = None) -> np.ndarray:
    """σ in fb of one channel (without κ) at masses m_a, m_b (GeV; arrays broadcast), numpy.

    ``m_a``, ``m_b`` are the masses of ``channel.pair[0]`` and ``channel.pair[1]``. Returns zeros
    only when the process has no reference table at this √s (see :meth:`XsecFits.sqrts_of`).
    """
    fit = (fits or load_fits()).fit(channel.process, sqrts)
    m_a, m_b = np.broadcast_arrays(np.asarray(m_a, dtype=float), np.asarray(m_b, dtype=float))
    if fit is None:
        return np.zeros(m_a.shape)
    return channel.factor * np.exp(fit.log_xsec(_process_masses(fit, m_a, m_b)))


def channel_xsec_tensor(channel: ProductionChannel, m_a: Any, m_b: Any, sqrts: int,
                        fits: XsecFits | None = None) -> pt.TensorVariable | None:
    """σ in fb of one channel (without κ) as a PyTensor expression of the masses (GeV).

    ``m_a``, ``m_b`` are tensors of any (equal or broadcastable) shape, e.g. one entry per chain.
    Returns None when the process has no reference table at this √s.
    """
    fit = (fits or load_fits()).fit(channel.process, sqrts)
    if fit is None:
        return None
    m_a, m_b = pt.as_tensor_variable(m_a), pt.as_tensor_variable(m_b)
    return channel.factor * pt.exp(fit.log_xsec(_process_masses(fit, m_a, m_b), xp=PYTENSOR))


def in_table_range(channel: ProductionChannel, m_a: Any, m_b: Any, sqrts: int,
                   fits: XsecFits | None = None) -> np.ndarray:
    """True where the channel's σ at √s is an interpolation (inside the table), False where extrapolated
    or where no table exists at this √s."""
    fit = (fits or load_fits()).fit(channel.process, sqrts)
    m_a, m_b = np.broadcast_arrays(np.asarray(m_a, dtype=float), np.asarray(m_b, dtype=float))
    if fit is None:
        return np.zeros(m_a.shape, dtype=bool)
    return fit.in_range(_process_masses(fit, m_a, m_b))


def kappa_lookup(space: ProtomodelSpace, kappas: Mapping[Any, float]) -> dict[Pair, float]:
    """κ per shared κ key from a user dict keyed by signed pairs (tuples or "a,b" strings).

    Either member of a charge-conjugate class may be given; giving both with different values is an
    error. Keys of pairs the space does not produce are ignored (e.g. the LSP pair).
    """
    resolved: dict[Pair, tuple[float, Pair]] = {}
    classes = space.kappa_classes()
    for raw_key, value in kappas.items():
        pair = _parse_pair(raw_key)
        key = space.kappa_key(pair)
        if key not in classes:
            continue
        if key in resolved and resolved[key][0] != float(value):
            raise UserError(f"kappa for {list(pair)} = {value} conflicts with {list(resolved[key][1])} = "
                            f"{resolved[key][0]}: charge-conjugate channels share one kappa")
        resolved[key] = (float(value), pair)
    return {key: value for key, (value, _) in resolved.items()}


def _parse_pair(key: Any) -> Pair:
    try:
        parts = key.split(",") if isinstance(key, str) else list(key)
        a, b = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise UserError(f"kappa key {key!r} is not a signed PDG pair like '-1000001,1000001'") from None
    return (min(a, b), max(a, b))


def cross_sections(space: ProtomodelSpace, masses: Mapping[int, float], kappas: Mapping[Any, float],
                   sqrts: int, fits: XsecFits | None = None) -> dict[Pair, float]:
    """κ × σ in fb for every production channel whose particles are all present.

    ``masses``: GeV by positive PDG id (the particles present); ``kappas``: by signed pair
    (missing pairs have κ = 1); ``sqrts`` in TeV (8 or 13). Keys of the result are the sorted signed
    pairs. Channels without a reference table at this √s are left out (documented per process).
    """
    fits = fits or load_fits()
    masses = {abs(int(p)): float(m) for p, m in masses.items()}
    kappa = kappa_lookup(space, kappas)
    result: dict[Pair, float] = {}
    for channel in space.productions:
        a, b = (abs(p) for p in channel.pair)
        if a not in masses or b not in masses or fits.fit(channel.process, sqrts) is None:
            continue
        sigma = float(channel_xsec(channel, masses[a], masses[b], sqrts, fits))
        result[channel.key] = kappa.get(channel.kappa_key, 1.0) * sigma
    return result


def cross_section_tensors(space: ProtomodelSpace, masses: Mapping[int, Any], sqrts: int,
                          kappas: Mapping[Pair, Any] | None = None,
                          fits: XsecFits | None = None) -> dict[Pair, pt.TensorVariable]:
    """κ × σ in fb as PyTensor expressions, the graph counterpart of :func:`cross_sections`.

    ``masses``: GeV tensors (e.g. one entry per chain) by positive PDG id of the particles present;
    ``kappas``: tensors or numbers by shared κ key (``channel.kappa_key``; missing keys mean κ = 1).
    """
    fits = fits or load_fits()
    kappas = kappas or {}
    result: dict[Pair, pt.TensorVariable] = {}
    for channel in space.productions:
        a, b = (abs(p) for p in channel.pair)
        if a not in masses or b not in masses:
            continue
        sigma = channel_xsec_tensor(channel, masses[a], masses[b], sqrts, fits)
        if sigma is not None:
            result[channel.key] = kappas.get(channel.kappa_key, 1.0) * sigma
    return result
