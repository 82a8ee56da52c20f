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
``pytensor.grad``) come from the same code. :class:`ChannelXsecs` evaluates it for every channel
and √s of a space and many mass points in one compiled (numba) pass, with ∂ ln σ/∂m (it serves
:func:`cross_sections` and the predictions' table arrays).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numba
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
    classes = {channel.kappa_key for channel in space.productions}
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
    One model through :class:`ChannelXsecs`.
    """
    table = channel_xsecs(space, (sqrts,), fits)
    masses = {abs(int(p)): float(m) for p, m in masses.items()}
    point = np.array([[masses.get(p, np.nan) for p in table.particles]])
    xsec, _ = table.evaluate(point, table.kappa_vector(kappas)[None])
    return {pair: float(xsec[0, c, 0]) for c, pair in enumerate(table.channels) if table.has_fit[c, 0]
            and all(abs(p) in masses for p in pair)}


class ChannelXsecs:
    """κ × σ (fb) and ∂ ln σ/∂(m_a, m_b) (1/GeV) of every production channel of a space at the given
    √s (TeV), for many mass points at once: one compiled pass (numba) over all points, channels and √s.

    Layout (that of the topology table): channel ``c`` is ``space.productions[c]``, particle ``i``
    is ``sorted(space.particles)[i]``, κ class ``k`` is ``kappa_keys[k]``. The fits of each number
    of mass arguments are stacked with their Chebyshev coefficients zero-padded to a common degree:
    the series and extrapolation rules of :meth:`ProcessFit.log_xsec` (padding terms add exact
    zeros), summed in another order (σ agrees to 1e-14 relative, tested). The derivative is exact:
    the differentiated series inside the table range, the slopes of the extrapolation rules outside
    it, and for two-mass fits the cross term of an extrapolated argument's edge slope with the other.
    """

    def __init__(self, space: ProtomodelSpace, sqrts: tuple[int, ...], fits: XsecFits | None = None):
        fits = fits or load_fits()
        self.space, self.sqrts = space, tuple(int(s) for s in sqrts)
        self.channels: tuple[Pair, ...] = tuple(c.key for c in space.productions)
        self.particles: tuple[int, ...] = tuple(sorted(space.particles))
        self.kappa_keys: tuple[Pair, ...] = tuple(dict.fromkeys(c.kappa_key for c in space.productions))
        pindex = {p: i for i, p in enumerate(self.particles)}
        kindex = {k: i for i, k in enumerate(self.kappa_keys)}
        self.channel_particles = np.array([[pindex[abs(p)] for p in c.pair] for c in space.productions],
                                          dtype=np.int64).reshape(-1, 2)
        self.channel_kappa = np.array([kindex[c.kappa_key] for c in space.productions], dtype=np.int64)
        self.has_fit = np.zeros((len(self.channels), len(self.sqrts)), dtype=bool)
        columns: dict[int, list[tuple[int, ProductionChannel, ProcessFit]]] = {}
        for c, channel in enumerate(space.productions):
            for s_i, s in enumerate(self.sqrts):
                fit = fits.fit(channel.process, s)
                if fit is not None:
                    self.has_fit[c, s_i] = True
                    columns.setdefault(fit.n_masses, []).append((c * len(self.sqrts) + s_i, channel, fit))
        self._kappa_plans: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, bool]] = {}
        stacks = [_FitStack.of(n, cols, self.channel_particles, self.channel_kappa, len(self.sqrts))
                  for n, cols in sorted(columns.items())]
        #: the fit stacks as tuples of their arrays, the argument of :func:`evaluate_stacks`; never
        #: empty (numba cannot loop over an empty tuple): without fits, one stack without columns
        self.stacks = tuple(stack.args() for stack in stacks or [_FitStack.empty()])

    def kappa_vector(self, kappas: Mapping[Any, float]) -> np.ndarray:
        """κ per class (``kappa_keys`` order, 1 where not given) from a user dict (:func:`kappa_lookup`).

        The classes of a dict's keys are resolved once per tuple of keys (MCMC states keep their
        keys and change the values); dicts naming one class twice go through the value check."""
        out = np.ones(len(self.kappa_keys))
        if not kappas:
            return out
        keys = tuple(kappas)
        plan = self._kappa_plans.get(keys)
        if plan is None:
            index = {k: i for i, k in enumerate(self.kappa_keys)}
            resolved = [next(iter(kappa_lookup(self.space, {key: 1.0})), None) for key in keys]
            given = [(i, index[k]) for i, k in enumerate(resolved) if k is not None]
            plan = (np.array([i for i, _ in given], dtype=np.int64), np.array([k for _, k in given], dtype=np.int64),
                    len({k for _, k in given}) < len(given))
            if len(self._kappa_plans) < 10_000:
                self._kappa_plans[keys] = plan
        position, kappa_class, repeated = plan
        if repeated:
            given_values = kappa_lookup(self.space, kappas)
            return np.array([given_values.get(k, 1.0) for k in self.kappa_keys])
        out[kappa_class] = np.fromiter(kappas.values(), dtype=float, count=len(keys))[position]
        return out

    def evaluate(self, masses: np.ndarray, kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """κ × σ (B, C, S) in fb and ∂ ln σ/∂(m_a, m_b) (B, C, S, 2) in 1/GeV of B mass points.

        ``masses``: (B, P) GeV by particle index, NaN for absent particles; ``kappa``: (B, K) by κ
        class. Channels with an absent particle or without a fit at a √s get σ = 0 and zero slopes;
        m_a, m_b are the masses of ``channel.pair[0]``, ``channel.pair[1]``.
        """
        masses = np.ascontiguousarray(masses, dtype=float)
        kappa = np.ascontiguousarray(kappa, dtype=float)
        shape = (len(masses), len(self.channels), len(self.sqrts))
        xsec, dlog = np.zeros(shape), np.zeros((*shape, 2))
        evaluate_stacks(masses, kappa, self.stacks, xsec, dlog)
        return xsec, dlog


@dataclass(frozen=True)
class _FitStack:
    """The (channel, √s) columns whose fits take `n_masses` arguments: per column q the flat index
    c·S + s, the particle indices, κ class, factor, log-mass range and the zero-padded coefficient
    arrays (Q, A, N1, N2): the series, ∂/∂t_i (i < n) and, for n = 2, ∂/∂t_0 of ∂/∂t_1 and ∂/∂t_1 of
    ∂/∂t_0 (one-mass fits: N2 = 1, a constant second basis)."""

    n_masses: int
    column: np.ndarray
    particle_a: np.ndarray
    particle_b: np.ndarray
    kappa: np.ndarray
    factor: np.ndarray
    log_lo: np.ndarray          # (Q, n)
    log_hi: np.ndarray
    coefficients: np.ndarray    # (Q, A, N1, N2)

    @staticmethod
    def of(n: int, columns: list[tuple[int, ProductionChannel, ProcessFit]], channel_particles: np.ndarray,
           channel_kappa: np.ndarray, n_sqrts: int) -> _FitStack:
        flat = np.array([col for col, _, _ in columns], dtype=np.int64)
        arrays = []
        for _, _, fit in columns:
            terms = [fit.coefficients, *fit.gradients]
            if n == 2:
                terms += [_pad(chebyshev.chebder(fit.gradients[1], axis=0), fit.coefficients.shape),
                          _pad(chebyshev.chebder(fit.gradients[0], axis=1), fit.coefficients.shape)]
            arrays.append([a.reshape(a.shape + (1,) * (2 - n)) for a in terms])
        shape = tuple(max(a[0].shape[k] for a in arrays) for k in (0, 1))
        coefficients = np.stack([np.stack([_pad(a, shape) for a in terms]) for terms in arrays])
        particles = channel_particles[flat // n_sqrts]
        return _FitStack(n, flat, particles[:, 0].copy(), particles[:, 1].copy(), channel_kappa[flat // n_sqrts],
                         np.array([ch.factor for _, ch, _ in columns]),
                         np.array([fit.log_lo for _, _, fit in columns]),
                         np.array([fit.log_hi for _, _, fit in columns]), coefficients)

    @staticmethod
    def empty() -> _FitStack:
        """A stack without columns (adds nothing)."""
        index = np.zeros(0, dtype=np.int64)
        return _FitStack(1, index, index, index, index, np.zeros(0), np.zeros((0, 1)), np.zeros((0, 1)),
                         np.zeros((0, 2, 1, 1)))

    def args(self) -> tuple:
        """The fields in order (stacks of any n have the same element types: one numba type)."""
        return (self.n_masses, self.column, self.particle_a, self.particle_b, self.kappa, self.factor,
                self.log_lo, self.log_hi, self.coefficients)


_CHANNEL_XSECS: dict[tuple[int, tuple[int, ...], int], tuple[ProtomodelSpace, XsecFits, ChannelXsecs]] = {}


def channel_xsecs(space: ProtomodelSpace, sqrts: tuple[int, ...], fits: XsecFits | None = None) -> ChannelXsecs:
    """The :class:`ChannelXsecs` of a space at √s (TeV), built once per space, √s and fits object."""
    fits = fits or load_fits()
    key = (id(space), tuple(sqrts), id(fits))
    entry = _CHANNEL_XSECS.get(key)
    if entry is None or entry[0] is not space or entry[1] is not fits:   # ids are kept alive below
        entry = _CHANNEL_XSECS[key] = (space, fits, ChannelXsecs(space, sqrts, fits))
    return entry[2]


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


@numba.njit(cache=True)
def evaluate_stacks(masses, kappa, stacks, xsec, dlog):
    """Fill κ × σ (B, C, S) and ∂ ln σ/∂(m_a, m_b) (B, C, S, 2) (zeros where not computed) from every
    fit stack (:attr:`ChannelXsecs.stacks`), one :func:`_evaluate_stack` after the other."""
    n_b = masses.shape[0]
    flat, flat_dlog = xsec.reshape((n_b, -1)), dlog.reshape((n_b, -1, 2))
    for stack in stacks:
        _evaluate_stack(masses, kappa, *stack, flat, flat_dlog)


@numba.njit(cache=True)
def _evaluate_stack(masses, kappa, n, column, particle_a, particle_b, kappa_class, factor, log_lo, log_hi,
                    coefficients, xsec, dlog):
    """Fill κ × σ (B, Q') and ∂ ln σ/∂(m_a, m_b) (B, Q', 2) at the columns of one :class:`_FitStack`
    for every point whose two masses are given (:class:`ChannelXsecs`). Point by point, in a fixed
    order, so that a point's value does not depend on the batch it is evaluated in."""
    n_q, n_a, n1, n2 = coefficients.shape
    u, uc, lo, hi, scale, args = np.empty(2), np.empty(2), np.empty(2), np.empty(2), np.empty(2), np.empty(2)
    excess, d_u = np.empty(2), np.empty(2)
    first, second = np.empty(n1), np.empty(n2)
    inner = np.empty((n_a, n1))
    series = np.empty(n_a)
    for b in range(masses.shape[0]):
        for q in range(n_q):
            m_a, m_b = masses[b, particle_a[q]], masses[b, particle_b[q]]
            if np.isnan(m_a) or np.isnan(m_b):
                continue
            if n == 1:
                args[0] = (m_a + m_b) / 2.0
            else:
                args[0], args[1] = m_a, m_b
            for i in range(n):
                lo[i], hi[i] = log_lo[q, i], log_hi[q, i]
                u[i] = np.log(args[i])
                uc[i] = min(max(u[i], lo[i]), hi[i])
                scale[i] = 2.0 / (hi[i] - lo[i])
            _basis(2.0 * (uc[0] - lo[0]) / (hi[0] - lo[0]) - 1.0, first)
            if n == 2:
                _basis(2.0 * (uc[1] - lo[1]) / (hi[1] - lo[1]) - 1.0, second)
            for a in range(n_a):
                for j in range(n1):
                    if n == 2:
                        acc = coefficients[q, a, j, 0] * second[0]
                        for k in range(1, n2):
                            acc = acc + coefficients[q, a, j, k] * second[k]
                        inner[a, j] = acc
                    else:
                        inner[a, j] = coefficients[q, a, j, 0]
                acc = inner[a, 0] * first[0]
                for j in range(1, n1):
                    acc = acc + inner[a, j] * first[j]
                series[a] = acc
            value = series[0]
            for i in range(n):
                excess[i] = min(u[i] - uc[i], 0.0) + max(np.exp(u[i] - uc[i]) - 1.0, 0.0)
                value = value + series[1 + i] * scale[i] * excess[i]
            for i in range(n):
                slope = series[1 + i]
                inner_i = slope
                if n == 2:          # the edge slope of an extrapolated argument still varies with the other
                    inner_i += series[3 + i] * scale[1 - i] * excess[1 - i]
                d_excess = 1.0 if u[i] < uc[i] else (np.exp(u[i] - uc[i]) if u[i] > uc[i] else 0.0)
                inside = scale[i] * inner_i if u[i] >= lo[i] and u[i] <= hi[i] else 0.0
                d_u[i] = (inside + slope * scale[i] * d_excess) / args[i]
            col = column[q]
            xsec[b, col] = kappa[b, kappa_class[q]] * (factor[q] * np.exp(value))
            if n == 1:
                dlog[b, col, 0] = 0.5 * d_u[0]
                dlog[b, col, 1] = 0.5 * d_u[0]
            else:
                dlog[b, col, 0] = d_u[0]
                dlog[b, col, 1] = d_u[1]


@numba.njit(cache=True)
def _basis(t, out):
    """Chebyshev polynomials T_0 … T_{n−1} at t into `out` (n), as :func:`_chebyshev_basis`."""
    out[0] = 1.0
    if len(out) > 1:
        out[1] = t
    for i in range(2, len(out)):
        out[i] = 2.0 * t * out[i - 1] - out[i - 2]
