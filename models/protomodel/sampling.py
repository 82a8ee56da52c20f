"""Protomodels as a trans-dimensional target of the engine (:class:`tdmcmc.target.Target`).

Slots, parameters and globals: :mod:`.parameters`; prior: :mod:`.prior`; likelihood:
:class:`~.target.LikelihoodTarget`. Two targets (DESIGN §6):

* ``bayes``: log L = ln R(μ, θ) = max_c Σ_{i∈c} [ln L_i(μ s_i) − ln L_i(0)] at μ = f·μ_max(θ),
  f = sigmoid(``mu_fraction``) ~ U(0, 1); log p = the full prior (π(γ) ∝ exp(−λ n)).
* ``paper``: log L = K/2 = Z²/2 + ln π_paper (μ̂ profiled in [0, μ_max], Z = 0 when no two
  predicted results combine; π_paper the expo1 prior), log p = the prior's continuous densities
  with λ = 0 as reference measure: the target is exp(K/2) × reference density. K/2 as a whole is
  the tempered part, so sharpened levels (T < 1) favour high K, penalty for extra particles included.

Tempering acts on log L only. μ_max above 10⁴ (tiny or no signal) is capped at 10⁴ for μ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np

from tdmcmc.models.greedy.objective import MU_MAX_SAFETY
from tdmcmc.randomness import RandomSource
from tdmcmc.target import GaussianPseudoPrior

from .gradients import GRAPH_INPUTS, BatchGradient, chain_to_parameters
from .parameters import PhysicalBatch, SlotParameters
from .predictions import PredictionArrays, ProtomodelBatch
from .prior import PriorSettings, ProtomodelPrior
from .target import ResultInputs

TARGETS = ("bayes", "paper")
MU_CAP = 1.0e4
LOGISTIC_SD = float(np.pi / np.sqrt(3.0))     # sd of the logistic law: a uniform mass in interval space
DERIVED_BATCH = 32
CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Forward:
    """A batch's forward pass: what its gradient needs (physical values, protomodels, predictions,
    per-result inputs, the cotangents of those inputs, ∂log L/∂μ-fraction) and the outputs."""

    batch: PhysicalBatch
    models: ProtomodelBatch
    preds: PredictionArrays
    inputs: ResultInputs
    cot: dict[str, np.ndarray]
    grad_mu: np.ndarray
    out: dict[str, np.ndarray]


class ProtomodelTarget:
    """The engine's target on a :class:`~.target.LikelihoodTarget` (module docstring).

    :param likelihood: the compiled likelihood on one database and space
    :param kind: ``bayes`` or ``paper``
    :param settings: prior settings (λ, logit and ln κ widths)
    :param derived: compute K, Z, r_max, μ_max, μ for the output (off for prior-only runs)
    """

    def __init__(self, likelihood, kind: str = "bayes", settings: PriorSettings = PriorSettings(),
                 derived: bool = True) -> None:
        if kind not in TARGETS:
            raise ValueError(f"target: expected one of {TARGETS}, got {kind!r}")
        self.likelihood, self.kind, self.derived = likelihood, kind, derived
        self.params = SlotParameters(likelihood.space)
        self.prior = ProtomodelPrior(self.params, settings if kind == "bayes" else replace(settings, lam=0.0))
        self.layout = self.params.layout
        self.settings = settings
        self._cache: dict[bytes, float] = {}
        self._derived: dict[bytes, tuple[float, ...]] = {}
        self._grad_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._last_forward: tuple[tuple[bytes, ...], _Forward] | None = None
        self._last_prior: tuple[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    # -- Target protocol --------------------------------------------------------------------------

    def log_density(self, active, params, globals_):
        log_prior = self._prior(active, params, globals_)[0].copy()       # the kept arrays stay as they are
        log_lik = np.zeros(len(log_prior))
        for b, value in self._cached(self._cache, np.isfinite(log_prior), active, params, globals_, False):
            log_lik[b] = value
        return log_lik, log_prior

    def grad(self, active, params, globals_):
        """(∂log L/∂params, ∂log L/∂globals, ∂log p/∂params, ∂log p/∂globals) in the unconstrained
        coordinates; exact almost everywhere (discrete choices — SR selection, critic maximum,
        cliques, open channels, mass compression — are frozen at the state, see
        :mod:`.gradients`). The paper prior term ln π_paper is piecewise constant."""
        log_prior, gp_p, gp_g = self._prior(active, params, globals_)
        gp_p, gp_g = gp_p.copy(), gp_g.copy()
        gl_p, gl_g = np.zeros_like(params), np.zeros_like(globals_)
        for b, value in self._cached(self._grad_cache, np.isfinite(log_prior), active, params, globals_, True):
            gl_p[b], gl_g[b] = value
        return gl_p, gl_g, gp_p, gp_g

    def _prior(self, active, params, globals_) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``prior.log_prior`` (value and gradient in one call) of a batch; the last batch's is kept:
        MALA asks for the value of its proposals, then for their gradient (the prior's once, not twice)."""
        key = tuple((a.dtype.str, a.shape, a.tobytes()) for a in map(np.asarray, (active, params, globals_)))
        if self._last_prior is None or self._last_prior[0] != key:
            self._last_prior = (key, self.prior.log_prior(active, params, globals_))
        return self._last_prior[1]

    def _cached(self, cache: dict, ok: np.ndarray, active, params, globals_, gradient: bool):
        """(batch index, value) for every in-support state (`ok`): log L, or with `gradient` the
        pair of log-L gradients; states not in `cache` are evaluated together and remembered.

        The forward pass of the last batch of values is kept: MALA asks for the value of its
        proposals and then for their gradient, which then costs only the backward pass."""
        keys = [self._key(active[b], params[b], globals_[b]) if ok[b] else None for b in range(len(ok))]
        todo = [b for b in range(len(ok)) if ok[b] and keys[b] not in cache]
        if todo:
            batch_key = tuple(keys[b] for b in todo)
            if gradient and self._last_forward is not None and self._last_forward[0] == batch_key:
                forward = self._last_forward[1]
            else:
                forward = self._forward(active[todo], params[todo], globals_[todo])
                self._last_forward = (batch_key, forward)
            if gradient:
                g_params, g_globals = self._backward(forward, params[todo])
                values = [(g_params[i], g_globals[i]) for i in range(len(todo))]
            else:
                values = forward.out["log_lik"].tolist()
            for b, value in zip(todo, values):
                _remember(cache, keys[b], value)
        return [(b, cache[keys[b]]) for b in np.flatnonzero(ok)]

    def _key(self, active, params, globals_) -> bytes:
        """A state's identity: indicators, the used entries of active slots, globals (the
        likelihood ignores everything else)."""
        used = np.where(active[:, None] & self.layout.param_mask, params, 0.0)
        return active.tobytes() + used.tobytes() + np.asarray(globals_, float).tobytes()

    def log_prior(self, active, params, globals_) -> np.ndarray:
        """The prior alone (for prior-only runs, which use the ``bayes`` kind)."""
        return self.prior.log_prior(active, params, globals_)[0]

    def evaluate(self, active, params, globals_, gradient: bool = False, derived: bool = False
                 ) -> dict[str, np.ndarray]:
        """The likelihood of a batch of in-support states, uncached: ``log_lik`` (B,), ``mu``,
        ``mu_max``, ``r_max``; with `gradient` ``grad_params`` (B, S, D) and ``grad_globals`` (B, G),
        the gradient of log L in the unconstrained coordinates; with `derived` (and always for the
        ``paper`` target) also the paper ``K`` and ``Z``."""
        forward = self._forward(active, params, globals_, derived)
        if not gradient:
            return forward.out
        g_params, g_globals = self._backward(forward, params)
        return forward.out | {"grad_params": g_params, "grad_globals": g_globals}

    def _forward(self, active, params, globals_, derived: bool = False) -> _Forward:
        """log L and the cotangents of the per-result inputs (:data:`.gradients.GRAPH_INPUTS`)."""
        lt = self.likelihood
        batch = self.params.physical(active, params, globals_)
        models = self.params.protomodel_batch(batch, lt.predictor)     # Protomodel objects only if needed
        out: dict[str, np.ndarray] = {}
        if self.kind == "paper" or derived:
            values, preds, inputs = lt.evaluate(models, per_prediction=False)
            out.update(K=values.K, Z=values.Z, r_max=values.r_max, mu_max=values.mu_max, mu=values.mu_hat)
        if self.kind == "paper":
            out.update(log_lik=_paper_log_lik(values.Z, values.log_prior))
            cot = {k: 0.5 * getattr(values, f"grad_{k}") for k in GRAPH_INPUTS}
            grad_mu = np.zeros(len(models))
        else:
            if not derived:                # derived: lt.evaluate gave the same predictions above
                preds, inputs = lt.prepare(models, paper=False)
            top, r_max, mu_max, bound, mu = _signal_strength(inputs.critic_r, batch.mu_fraction,
                                                             MU_MAX_SAFETY * lt.r_threshold, MU_CAP)
            bayes = lt.bayes_values(inputs, mu)
            out.update(log_lik=bayes.log_ratio, mu=mu, mu_max=mu_max, r_max=r_max, log_ratio=bayes.log_ratio)
            critic, grad_mu = _signal_strength_cotangents(inputs.critic_r.shape, top, r_max, mu_max, bound, mu,
                                                          batch.mu_fraction, bayes.grad_mu, MU_CAP)
            cot = {"signal": bayes.grad_signal, "ul_obs": bayes.grad_ul_obs, "ul_exp": bayes.grad_ul_exp,
                   "critic_r": critic, "sl_signal": bayes.grad_sl_signal}
        return _Forward(batch, models, preds, inputs, cot, grad_mu, out)

    def _backward(self, forward: _Forward, params) -> tuple[np.ndarray, np.ndarray]:
        """(∂log L/∂params, ∂log L/∂globals) of a forward pass."""
        physical = chain_to_parameters(self.likelihood, forward.models, forward.preds, forward.inputs, forward.cot)
        return self._unconstrained_gradient(forward.batch, params, physical), forward.grad_mu[:, None]

    def _unconstrained_gradient(self, batch: PhysicalBatch, params, physical: BatchGradient) -> np.ndarray:
        """Chain rule from ∂/∂(masses, BRs, κ) to the slot entries (:mod:`.parameters`)."""
        return self.params.table_map(self.likelihood.predictor).unconstrained_gradient(
            batch, physical.masses, physical.brs, physical.kappas, params.shape)

    def initial_point(self, src: RandomSource):
        """The LSP alone; every slot's entries (the LSP's too) drawn from the pseudo-prior; μ/μ_max = 1/2."""
        params = self.pseudo_prior().sample(src)
        active = np.zeros(params.shape[:2], bool)
        active[:, self.params.lsp_slot] = True
        return active, params, np.zeros((len(params), self.layout.n_globals))

    def pseudo_prior(self) -> GaussianPseudoPrior:
        """N(0, σ²) per entry: σ = π/√3 for masses (the logistic law of a uniform mass), the prior
        widths for ln κ and the BR logits."""
        p, st = self.params, self.settings
        s, d = self.layout.n_slots, self.layout.max_dim
        std = np.full((s, d), st.logit_sd)
        std[:, 0] = LOGISTIC_SD
        for j in range(s):
            std[j, 1:p.logit_start[j]] = st.log_kappa_sd
        return GaussianPseudoPrior(np.zeros((s, d)), std, self.layout.param_mask.copy())

    def named_variables(self, active, params, globals_) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """mass (GeV), br per decay unit, kappa per κ class, mu, n_particles, model label, and
        (``derived``) K, Z, r_max, mu_max evaluated on the distinct states."""
        p = self.params
        active = np.asarray(active, bool)
        batch = p.physical(active, params, globals_)
        labels = p.decay_labels()
        br = np.stack([batch.unit_br[:, j, k] for j, k, _ in labels], axis=1)
        br = np.where(active[:, [j for j, _, _ in labels]], br, np.nan)
        out: dict[str, tuple[tuple[str, ...], Any]] = {
            "mass": ((self.layout.slot_dim,), batch.masses),
            "br": (("decay",), br),
            "kappa": (("production",), batch.kappa),
            "n_particles": ((), active.sum(axis=1).astype(np.int64)),
            "model": ((), np.array([p.label(a) for a in active], dtype=object)),
        }
        if self.derived:
            out.update({k: ((), v) for k, v in self.derived_values(active, params, globals_).items()})
        return out

    def derived_values(self, active, params, globals_) -> dict[str, np.ndarray]:
        """K, Z, r_max, mu_max, mu (and ln R for ``bayes``) per state; each distinct state is
        evaluated once and remembered (a run file is rewritten at every checkpoint)."""
        names = ["K", "Z", "r_max", "mu_max", "mu"] + (["log_ratio"] if self.kind == "bayes" else [])
        keys = [self._key(active[b], params[b], globals_[b]) for b in range(len(active))]
        todo = list({k: b for b, k in enumerate(keys) if k not in self._derived}.values())
        for i in range(0, len(todo), DERIVED_BATCH):
            rows = todo[i:i + DERIVED_BATCH]
            values = self.evaluate(active[rows], params[rows], globals_[rows], derived=True)
            for j, b in enumerate(rows):
                self._derived[keys[b]] = tuple(float(values[k][j]) for k in names)
        table = np.array([self._derived[k] for k in keys]).reshape(len(keys), len(names))
        return {k: table[:, i] for i, k in enumerate(names)}

    # -- output metadata --------------------------------------------------------------------------

    def output_coords(self) -> dict[str, list[str]]:
        """Coordinates of the non-slot dims of :meth:`named_variables`."""
        return {"decay": [label for _, _, label in self.params.decay_labels()],
                "production": self.params.kappa_labels()}

    def output_attrs(self) -> dict[str, dict[str, str]]:
        """Per-variable attributes (units, meaning)."""
        return {
            "mass": {"units": "GeV"},
            "br": {"units": "1", "long_name": "branching ratio of each decay unit (channels of a group share it)"},
            "kappa": {"units": "1", "long_name": "signal-strength multiplier per production class (NaN unless both particles are active)"},
            "mu": {"units": "1", "long_name": "global signal strength (bayes: sampled; paper: profiled mu_hat)"},
            "mu_max": {"units": "1", "long_name": "critic bound r_threshold / r_max"},
            "K": {"long_name": "paper test statistic Z^2 + 2 ln pi_paper (NaN: no two predicted results combine)"},
            "Z": {"long_name": "significance of the best combination at mu_hat"},
            "r_max": {"long_name": "largest observed r of the critic"},
        }

    def run_attributes(self) -> dict[str, Any]:
        """Run-level attributes: target, prior settings, database identity."""
        lt = self.likelihood
        db = lt.compiled.database
        return {"target": self.kind, "prior_lambda": self.prior.settings.lam, "prior_logit_sd": self.settings.logit_sd,
                "prior_log_kappa_sd": self.settings.log_kappa_sd, "space": lt.space.name,
                "database_path": str(getattr(db, "path", "")), "database_version": str(getattr(db, "version", "")),
                "database_content_hash": str(getattr(db, "content_hash", "")),
                "r_threshold": lt.r_threshold, "em_likelihood": lt.likelihood.em, "ul_likelihood": lt.likelihood.ul,
                "sr_selection": lt.sr_selection}



def build_target(database=None, *, kind: str = "bayes", space_path=None, combination_matrix=None,
                 r_threshold: float = 1.3, settings: PriorSettings = PriorSettings(),
                 prior_only: bool = False, sr_selection: str = "paper") -> ProtomodelTarget:
    """The sampler's protomodel target on a database folder (default: the demo database), with the
    paper's likelihood variants (2020) and the given SR selection (default: the paper's)."""
    from pathlib import Path

    from tdmcmc.errors import UserError
    from tdmcmc.models.database.cli import default_database
    from tdmcmc.models.protomodel.space import default_space, load_space
    from tdmcmc.models.protomodel.target import LikelihoodTarget

    if settings.lam < 0 or settings.logit_sd <= 0 or settings.log_kappa_sd <= 0:
        raise UserError(f"prior settings: lambda must be >= 0 and the widths > 0, got {settings}")
    if not r_threshold > 0:
        raise UserError(f"--r-threshold: expected a positive number, got {r_threshold}")
    space = load_space(space_path) if space_path else default_space()
    db = Path(database) if database else default_database()
    likelihood = LikelihoodTarget(db, combination_matrix, space=space, r_threshold=r_threshold,
                                  sr_selection=sr_selection)
    # Prior-only runs sample the bayes prior π(γ)π(θ|γ) (the paper target's π_paper is part of its score).
    return ProtomodelTarget(likelihood, "bayes" if prior_only else kind, settings, derived=not prior_only)


_FLOAT_MAX = float(np.finfo(np.float64).max)


@numba.njit(cache=True)
def _paper_log_lik(z, log_prior):
    """log L = Z²/2 + ln π_paper (B,) of the ``paper`` target, Z as np.nan_to_num gives it (NaN: 0,
    ±∞: ± the largest float); numpy's arithmetic."""
    out = np.empty(len(z))
    for b in range(len(z)):
        v = z[b]
        if v != v:
            v = 0.0
        elif v == np.inf:
            v = _FLOAT_MAX
        elif v == -np.inf:
            v = -_FLOAT_MAX
        out[b] = 0.5 * v * v + log_prior[b]
    return out


@numba.njit(cache=True)
def _signal_strength(critic_r, mu_fraction, mu_max_r1, cap):
    """(top, r_max, μ_max, bound, μ) (B,) of the ``bayes`` target: top the column of the critic's
    largest r (the first, NaN wins, as np.argmax) and r_max its r (as np.max), μ_max =
    `mu_max_r1`/r_max (∞ unless r_max > 0), bound = min(μ_max, `cap`), μ = f·bound; numpy's
    arithmetic."""
    n_b, n_r = critic_r.shape
    top = np.zeros(n_b, np.int64)
    r_max, mu_max, bound, mu = np.empty(n_b), np.empty(n_b), np.empty(n_b), np.empty(n_b)
    for b in range(n_b):
        for r in range(1, n_r):
            best, value = critic_r[b, top[b]], critic_r[b, r]
            if best != best:
                break
            if value > best or value != value:
                top[b] = r
        r_max[b] = critic_r[b, top[b]]
        mu_max[b] = mu_max_r1 / r_max[b] if r_max[b] > 0 else np.inf
        bound[b] = mu_max[b] if (mu_max[b] <= cap or mu_max[b] != mu_max[b]) else cap
        mu[b] = mu_fraction[b] * bound[b]
    return top, r_max, mu_max, bound, mu


@numba.njit(cache=True, error_model="numpy")
def _signal_strength_cotangents(shape, top, r_max, mu_max, bound, mu, mu_fraction, grad_mu, cap):
    """(∂log L/∂critic_r `shape` (B, R), ∂log L/∂z_μ (B,)) of the ``bayes`` target from ∂log L/∂μ
    (`grad_mu`): μ = f·0.999 r_thr/r_max, so the critic's largest r (column `top`) moves μ below the
    cap; z_μ moves μ through f = sigmoid(z_μ). numpy's arithmetic."""
    critic = np.zeros(shape)
    g_z = np.empty(shape[0])
    for b in range(shape[0]):
        live = mu_max[b] < cap and r_max[b] > 0
        critic[b, top[b]] = -grad_mu[b] * mu[b] / r_max[b] if live else 0.0
        g_z[b] = grad_mu[b] * bound[b] * mu_fraction[b] * (1.0 - mu_fraction[b])
    return critic, g_z


def _remember(cache: dict, key: bytes, value) -> None:
    """Keep values of recent states (bounded, oldest out): rejected and null proposals (e.g. an
    identity swap of two inactive slots) come back to states already evaluated."""
    if len(cache) >= CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value
