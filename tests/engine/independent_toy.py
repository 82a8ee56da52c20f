"""A continuous trans-dimensional target with a closed-form posterior, for sampler tests.

Slot 0 (1 parameter) and an exchangeable group of slots 1–3 (2 parameters each), plus one global
g. Prior: π(γ) ∝ exp(−λ k), θ_j ~ N(0, I) when active, g ~ N(0, 1). Likelihood: each active slot
observes y_j ~ N(θ_j, s² I), an inactive one y_j ~ N(0, s² I) (pure noise; no dependence on its
parameters); g observes y_g ~ N(g, 1). Slots are independent a posteriori:

    P(γ_j = 1 | y) = e^{−λ} Z_j / (1 + e^{−λ} Z_j),   Z_j = Π_d N(y_jd; 0, 1 + s²) / N(y_jd; 0, s²),
    θ_j | γ_j = 1, y ~ N(y_j / (1 + s²), s² / (1 + s²)),   g | y ~ N(y_g / 2, 1/2).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from tdmcmc.state import SlotLayout
from tdmcmc.target import GaussianPseudoPrior

LAM = 0.8
S = 0.7
Y = np.array([[1.2, 0.0], [0.9, -0.6], [0.9, -0.6], [0.9, -0.6]])
Y_GLOBAL = 0.8
_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


class IndependentSlots:
    layout = SlotLayout(
        slot_names=("solo", "g1", "g2", "g3"),
        param_names=("u", "v"),
        slot_dims=(1, 2, 2, 2),
        groups=(-1, 0, 0, 0),
        global_names=("g",),
    )

    def log_density(self, active, params, globals_):
        mask = self.layout.param_mask[None] & active[:, :, None]
        resid = (Y - np.where(mask, params, 0.0)) / S
        used = self.layout.param_mask[None]
        log_lik = np.where(used, -0.5 * resid**2 - np.log(S) - _LOG_SQRT_2PI, 0.0).sum(axis=(1, 2))
        log_lik = log_lik - 0.5 * (Y_GLOBAL - globals_[:, 0]) ** 2 - _LOG_SQRT_2PI
        log_prior = np.where(mask, -0.5 * params**2 - _LOG_SQRT_2PI, 0.0).sum(axis=(1, 2))
        log_prior = log_prior - LAM * active.sum(1) - 0.5 * globals_[:, 0] ** 2 - _LOG_SQRT_2PI
        return log_lik, log_prior

    def grad(self, active, params, globals_):
        mask = self.layout.param_mask[None] & active[:, :, None]
        g_lik = np.where(mask, (Y - params) / S**2, 0.0)
        g_prior = np.where(mask, -params, 0.0)
        return g_lik, (Y_GLOBAL - globals_), g_prior, -globals_

    def pseudo_prior(self):
        shape = (4, 2)
        return GaussianPseudoPrior(np.zeros(shape), np.ones(shape), self.layout.param_mask.copy())

    def initial_point(self, src):
        params = self.pseudo_prior().sample(src)
        return np.zeros(params.shape[:2], bool), params, src.normal((1,))

    def named_variables(self, active, params, globals_):
        return {
            "theta": ((self.layout.slot_dim, "component"), params),
            "g": ((), globals_[:, 0]),
        }


def inclusion() -> np.ndarray:
    """Exact P(γ_j = 1 | y) per slot."""
    dims = np.asarray(IndependentSlots.layout.slot_dims)
    mask = np.arange(2)[None] < dims[:, None]
    log_bf = stats.norm(0, np.sqrt(1 + S**2)).logpdf(Y) - stats.norm(0, S).logpdf(Y)
    log_z = np.where(mask, log_bf, 0.0).sum(1)
    odds = np.exp(-LAM + log_z)
    return odds / (1 + odds)


def size_distribution() -> np.ndarray:
    """Exact P(k | y), k = 0…4 (convolution of independent Bernoullis)."""
    dist = np.array([1.0])
    for p in inclusion():
        dist = np.convolve(dist, [1 - p, p])
    return dist


def theta_mean() -> np.ndarray:
    return Y / (1 + S**2)
