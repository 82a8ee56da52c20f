"""One formula, two backends: numpy (eager values) and PyTensor (graphs with gradients).

Every likelihood in this package is written once against a namespace ``xp`` holding the few array
operations it needs. ``NUMPY`` evaluates eagerly; ``PYTENSOR`` builds a symbolic graph that
``pytensor.grad`` differentiates and ``pytensor.function`` compiles. This keeps one definition per
formula (the numpy path is what tests compare with SModelS and scipy; the graph is what the sampler
runs) without compiling a PyTensor function for every numpy call. The same pattern is used for the
cross sections (:mod:`tdmcmc.models.protomodel.xsec`).

``stop_gradient`` is the identity in value; in PyTensor it cuts the gradient. ``loop`` repeats a
step a fixed number of times (a Python loop; a ``scan`` in PyTensor, so the graph does not grow
with the number of iterations; its results carry no gradient). Iterative solvers
(profiled nuisances, modes, μ̂) run on stopped inputs and are then corrected by one exact step or
by the envelope theorem, so gradients are exact at convergence and graphs stay small.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytensor
import pytensor.tensor as pt
import scipy.special as sc
from pytensor.gradient import disconnected_grad

_COMMON = ("log", "exp", "sqrt", "log1p", "abs", "sign", "maximum", "minimum", "clip", "where",
           "floor", "round", "stack", "concatenate", "expand_dims", "take_along_axis", "argmin",
           "zeros_like", "ones_like", "einsum", "matmul", "sum", "all", "arange")

NUMPY = SimpleNamespace(
    **{op: getattr(np, op) for op in _COMMON},
    asarray=lambda x: np.asarray(x, dtype=float),
    gammaln=sc.gammaln, erfc=sc.erfc, erfcx=sc.erfcx,
    solve=lambda a, b: np.linalg.solve(a, b[..., None])[..., 0],
    eq=np.equal,
    stop_gradient=lambda x: x,
    name="numpy",
)

PYTENSOR = SimpleNamespace(
    **{op: getattr(pt, op) for op in _COMMON if op != "where"},
    where=pt.switch,
    asarray=pt.as_tensor_variable,
    gammaln=pt.gammaln, erfc=pt.erfc, erfcx=pt.erfcx,
    solve=lambda a, b: pt.linalg.solve(a, b[..., None], b_ndim=2)[..., 0],
    eq=pt.eq,
    stop_gradient=disconnected_grad,
    name="pytensor",
)

def _numpy_loop(step, state: tuple, n_steps: int) -> tuple:
    for _ in range(n_steps):
        state = step(*state)
    return state


def _scan_loop(step, state: tuple, n_steps: int) -> tuple:
    """``state = step(*state)`` n_steps times as one ``scan`` (a graph of constant size).

    The inner graph is compiled with the default mode in force when the graph is built (scan
    would otherwise pick its own), so a caller can choose it with ``pytensor.config.change_flags``.
    """
    outputs = pytensor.scan(step, outputs_info=list(state), n_steps=n_steps,
                            return_list=True, return_updates=False,
                            mode=pytensor.compile.mode.get_default_mode())
    return tuple(disconnected_grad(out[-1]) for out in outputs)


NUMPY.loop = _numpy_loop
PYTENSOR.loop = _scan_loop

_SQRT_HALF = float(np.sqrt(0.5))
_LOG_HALF = float(np.log(0.5))


def backend_of(*values: object) -> SimpleNamespace:
    """PYTENSOR if any value is a PyTensor variable, else NUMPY."""
    return PYTENSOR if any(isinstance(v, pt.Variable) for v in values) else NUMPY


def log_ndtr(x, xp: SimpleNamespace):
    """ln Φ(x), Φ the standard normal CDF, accurate to ~1e-15 relative for all x (tested vs scipy).

    Left of x = −1 it uses ln Φ(x) = ln(erfcx(−x/√2)/2) − x²/2 (no underflow down to x ≈ −1e150);
    right of it ln(1 − erfc(x/√2)/2). Each branch sees an input clamped to its own side, so the
    unused branch never produces inf/NaN values or gradients.
    """
    left = xp.minimum(x, -1.0)
    right = xp.maximum(x, -1.0)
    log_left = xp.log(xp.erfcx(-left * _SQRT_HALF)) + _LOG_HALF - 0.5 * left * left
    log_right = xp.log1p(-0.5 * xp.erfc(right * _SQRT_HALF))
    return xp.where(x < -1.0, log_left, log_right)
