"""Upper-limit maps: r = σ/UL and the truncated-Gaussian likelihood from observed and expected ULs.

The likelihood of a UL result is a Gaussian in the signal, truncated to non-negative signal
(arXiv:1202.3415, eq. 3.24), with scale σ_e = UL_exp/1.96 and mode m chosen so that the observed
UL is the 95% quantile of the truncated distribution:

    [Φ((UL_obs − m)/σ_e) − Φ(−m/σ_e)] / Φ(m/σ_e) = 0.95,
    −ln L(x) = ln Φ(m/σ_e) + ½ ln 2π + ln(σ_e/unit) + ½ ((x − m)/σ_e)²,     x = μ σ_pred.

With z = m/σ_e and u = UL_obs/σ_e the mode condition is k(z) = ln 0.05 + ln Φ(z) − ln Φ(z − u) = 0.
k is strictly decreasing and convex in z (the inverse Mills ratio is decreasing and convex) and
runs from +∞ to ln 0.05, so the root is unique and Newton's method converges monotonically from
the second step on; it stops per value at a step below 1e-10 (1 + |z|), typically after 3–6
steps (a numba kernel, :mod:`.normal_kernels`). z is the root to within the rounding of z and of
k (tested against scipy's ln Φ); as u → 1e-3 (z ≈ −3000) that rounding alone is ~1e-9 relative.
The gradient of z w.r.t. u is the implicit one. The PyTensor Op runs the same kernel under the C
and Python linkers and, compiled into the graph, under PyTensor's Numba linker.

Variants (``UL_VARIANTS``; the ``--ul-likelihood`` choices):

``smodels3``  SModelS 3.2.1 ``TruncatedGaussians`` (statistics/truncatedGaussians.py, built by
    ``statsTools.CompRetriever.forTruncatedGaussian`` with ULs divided by σ_pred, i.e. in units of
    the signal strength μ, ``unit`` = σ_pred): when UL_obs > UL_exp, UL_exp is first inflated to
    UL_exp / (1 − corr·dr), dr = (UL_obs − UL_exp)/(UL_obs + UL_exp), corr = 0.6. For
    UL_obs < UL_exp the mode is 0 unless ``allow_negative`` (then the root above, negative).
``2020``  the paper's code (SModelS 2.0.0rc11 ``statistics.likelihoodFromLimits`` with
    ``runtime._cap_likelihoods = True``): no correction; ULs as event yields (``unit`` = 1/L);
    mode 0 for UL_obs < UL_exp; if dr = (UL_obs − UL_exp)/(UL_obs + UL_exp) exceeds 0.338, UL_obs
    is capped to UL_exp (1 + 0.338)/(1 − 0.338) ≈ 2.02 UL_exp (method reference §4.3). SModelS'
    own code writes this as dr₂ = 2 dr > ``_drmax``; the production runs stored
    ``_drmax = 0.676`` (= 2 × 0.338), and only this threshold reproduces the paper's Z on its
    best combination (3.222 against 3.237; SModelS' library default ``_drmax = 0.338`` on dr₂
    would cap at 1.41 UL_exp and give Z = 2.70). See docs/likelihoods.md.

Units: cross sections and ULs in fb, luminosity in fb⁻¹, μ dimensionless. Everything broadcasts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

from . import normal_kernels
from .backend import NUMPY, PYTENSOR, log_ndtr

UL_VARIANTS = ("2020", "smodels3")

SMODELS3_CORR = 0.6
PAPER_DRMAX = 0.338
_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))
_LOG_HALF_PDF = -0.5 * float(np.log(2.0 * np.pi))
_TINY_XSEC = 1e-300  # fb


def r_value(xsec_fb: Any, ul_fb: Any) -> Any:
    """r = σ_pred / UL (both fb): the critic's exclusion ratio."""
    return xsec_fb / ul_fb


def ul_nll(mu: Any, xsec_fb: Any, ul_obs_fb: Any, ul_exp_fb: Any, lumi_ifb: Any,
           variant: str = "smodels3", allow_negative: bool = False,
           xp: SimpleNamespace = NUMPY, corr: float = SMODELS3_CORR,
           drmax: float = PAPER_DRMAX) -> Any:
    """−ln L of UL results with expected limits at signal strength μ (broadcast over arguments).

    :param mu: signal strength
    :param xsec_fb: predicted σ×BR of the txname cluster at μ = 1 (fb, > 0)
    :param ul_obs_fb: observed 95% UL at the mass point (fb)
    :param ul_exp_fb: expected 95% UL at the mass point (fb)
    :param lumi_ifb: luminosity (fb⁻¹); sets the normalisation of the ``2020`` variant only
    :param variant: one of ``UL_VARIANTS``
    :param allow_negative: SModelS' ``allowNegativeSignals`` (negative mode for underfluctuations);
        ``smodels3`` only
    :param corr: SModelS' correction factor (``smodels3``)
    :param drmax: the 2020 capping threshold on dr (``2020``; < 1)
    """
    if variant not in UL_VARIANTS:
        raise ValueError(f"unknown UL likelihood variant {variant!r}; choose one of {UL_VARIANTS}")
    if variant == "2020" and allow_negative:
        raise ValueError("the 2020 UL likelihood has no negative-signal mode")
    obs, exp = ul_obs_fb, ul_exp_fb
    if variant == "smodels3":
        dr = (obs - exp) / (obs + exp)
        exp = xp.where(obs > exp, exp / (1.0 - corr * dr), exp)
        # the density is per unit μ: ln σ_pred is a μ-independent offset; floored so that a
        # prediction with no signal stays finite (differences in μ are unaffected)
        log_unit = -xp.log(xp.maximum(xsec_fb, _TINY_XSEC))
    else:
        cap = exp * (1.0 + drmax) / (1.0 - drmax)
        obs = xp.where((obs - exp) / (obs + exp) > drmax, cap, obs)
        log_unit = xp.log(lumi_ifb)
    sigma = exp / 1.96
    z = mode_in_sigmas(obs / sigma, xp)
    if not allow_negative:
        z = xp.where(obs < exp, 0.0, z)
    pull = (mu * xsec_fb - z * sigma) / sigma
    return log_ndtr(z, xp) + _HALF_LOG_2PI + xp.log(sigma) + log_unit + 0.5 * pull * pull


def mode_in_sigmas(u: Any, xp: SimpleNamespace = NUMPY) -> Any:
    """z = m/σ_e solving ln 0.05 + ln Φ(z) − ln Φ(z − u) = 0, for u = UL_obs/σ_e > 0.

    numpy: Newton iterations (:func:`.normal_kernels.mode_in_sigmas`). PyTensor: the same kernel
    inside an Op whose gradient is the implicit derivative dz/du = R(z − u) / (R(z − u) − R(z)),
    R = φ/Φ; a graph of unrolled Newton steps would take minutes to compile for no gain.
    """
    if xp is NUMPY:
        return normal_kernels.mode_in_sigmas(np.asarray(u, dtype=float))
    return _MODE_OP(u)


class _ModeInSigmas(Op):
    """Elementwise z(u) of :func:`mode_in_sigmas` for PyTensor graphs (float64 in and out)."""

    __props__ = ()

    def make_node(self, u):
        u = pt.as_tensor_variable(u)
        u = u if u.dtype == "float64" else pt.cast(u, "float64")
        return Apply(self, [u], [u.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = normal_kernels.mode_in_sigmas(inputs[0])

    def infer_shape(self, node, shapes):
        return shapes

    def pullback(self, inputs, outputs, cotangents):
        (u,), (z,), (g,) = inputs, outputs, cotangents
        left = _mills(z - u)
        return [g * left / (left - _mills(z))]


_MODE_OP = _ModeInSigmas()
_KERNELS_VERSION = int.from_bytes(hashlib.sha256(Path(normal_kernels.__file__).read_bytes()).digest()[:7])


@register_funcify_default_op_cache_key(_ModeInSigmas)
def _numba_mode_in_sigmas(op, node=None, **kwargs):
    """The Op under PyTensor's Numba linker: the kernel compiled into the graph (no object mode).
    The cache version is a hash of the kernels' source, so PyTensor's cached graphs, which embed
    the compiled kernel, are rebuilt when it changes."""
    kernel = normal_kernels.mode_in_sigmas

    @numba_njit
    def mode_in_sigmas_numba(u):
        return kernel(u)

    return mode_in_sigmas_numba, _KERNELS_VERSION


def _mills(x: Any) -> Any:
    """φ(x)/Φ(x), the inverse Mills ratio (PyTensor)."""
    return pt.exp(_LOG_HALF_PDF - 0.5 * x * x - log_ndtr(x, PYTENSOR))
