"""Protomodels as a trans-dimensional target of the engine (:class:`tdmcmc.target.Target`).

Slots, parameters and globals: :mod:`.parameters`; prior: :mod:`.prior`; likelihood:
:class:`~.target.LikelihoodTarget`. Two targets (DESIGN §6):

* ``bayes``: log L = ln R(μ, θ) = max_c Σ_{i∈c} [ln L_i(μ s_i) − ln L_i(0)] at μ = f·μ_max(θ),
  f = sigmoid(``mu_fraction``) ~ U(0, 1); log p = the full prior (π(γ) ∝ exp(−λ n)).
* ``paper``: log L = Z²/2 (μ̂ profiled in [0, μ_max], Z = 0 when no two predicted results combine);
  log p = ln π_paper (expo1) + the prior's continuous densities with λ = 0 as reference measure,
  so that the target is exp(K/2) × reference density (K = Z² + 2 ln π_paper).

Tempering acts on log L only. μ_max above 10⁴ (tiny or no signal) is capped at 10⁴ for μ.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tdmcmc.randomness import RandomSource
from tdmcmc.target import GaussianPseudoPrior

from .parameters import SlotParameters
from .prior import PriorSettings, ProtomodelPrior

TARGETS = ("bayes", "paper")
MU_CAP = 1.0e4
LOGISTIC_SD = float(np.pi / np.sqrt(3.0))     # sd of the logistic law: a uniform mass in interval space
DERIVED_BATCH = 32
CACHE_SIZE = 4096


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
        self._cache: dict[bytes, tuple[float, float]] = {}

    # -- Target protocol --------------------------------------------------------------------------

    def log_density(self, active, params, globals_):
        log_prior, _, _ = self.prior.log_prior(active, params, globals_)
        log_lik = np.zeros(len(log_prior))
        ok = np.isfinite(log_prior)
        keys = [self._key(active[b], params[b], globals_[b]) if ok[b] else None for b in range(len(ok))]
        todo = [b for b in range(len(ok)) if ok[b] and keys[b] not in self._cache]
        if todo:
            values = self._evaluate(active[todo], params[todo], globals_[todo])
            for i, b in enumerate(todo):
                self._remember(keys[b], (values["log_lik"][i], values["extra_log_prior"][i]))
        for b in np.flatnonzero(ok):
            lik, extra = self._cache[keys[b]]
            log_lik[b] = lik
            log_prior[b] += extra
        return log_lik, log_prior

    def _key(self, active, params, globals_) -> bytes:
        """A state's identity: indicators, the used entries of active slots, globals (the
        likelihood ignores everything else)."""
        used = np.where(active[:, None] & self.layout.param_mask, params, 0.0)
        return active.tobytes() + used.tobytes() + np.asarray(globals_, float).tobytes()

    def _remember(self, key: bytes, value) -> None:
        """Keep the likelihood of recent states: rejected and null proposals (e.g. an identity
        swap of two inactive slots) come back to states already evaluated."""
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = value

    def log_prior(self, active, params, globals_) -> np.ndarray:
        """The prior alone (for prior-only runs, which use the ``bayes`` kind)."""
        return self.prior.log_prior(active, params, globals_)[0]

    def _evaluate(self, active, params, globals_) -> dict[str, np.ndarray]:
        """Likelihood values of in-support states: log_lik, the paper prior term, and derived quantities."""
        p = self.params
        batch = p.physical(active, params, globals_)
        models = p.protomodels(batch)
        values, _, _ = self.likelihood.evaluate(models)
        z = np.nan_to_num(values.Z, nan=0.0)
        mu_max = np.minimum(values.mu_max, MU_CAP)
        out = {"K": values.K, "Z": values.Z, "r_max": values.r_max, "mu_max": values.mu_max}
        if self.kind == "paper":
            out.update(log_lik=0.5 * z * z, extra_log_prior=values.log_prior, mu=values.mu_hat)
        else:
            mu = batch.mu_fraction * mu_max
            bayes, _, _ = self.likelihood.evaluate_bayes(models, mu)
            out.update(log_lik=bayes.log_ratio, extra_log_prior=np.zeros(len(models)), mu=mu,
                       log_ratio=bayes.log_ratio)
        return out

    def initial_point(self, src: RandomSource):
        """The LSP alone (mass from its prior), every other slot from the pseudo-prior, μ/μ_max = 1/2."""
        params = self.pseudo_prior().sample(src)
        lsp = self.params.lsp_slot
        u = 0.5 * (1.0 + np.tanh(0.5 * src.normal(())))              # a uniform-ish fraction in (0, 1)
        params[:, lsp, 0] = np.log(u) - np.log1p(-u)
        active = np.zeros(params.shape[:2], bool)
        active[:, lsp] = True
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
        """K, Z, r_max, mu_max, mu (and ln R for ``bayes``) per state, each distinct state once."""
        flat = np.concatenate([active.reshape(len(active), -1), np.where(self.layout.param_mask[None] & active[:, :, None],
                               params, 0.0).reshape(len(active), -1), globals_], axis=1)
        unique, inverse = np.unique(flat, axis=0, return_inverse=True)
        s, d = self.layout.n_slots, self.layout.max_dim
        u_active = unique[:, :s] > 0.5
        u_params = unique[:, s:s + s * d].reshape(-1, s, d)
        u_globals = unique[:, s + s * d:]
        parts = [self._evaluate(u_active[i:i + DERIVED_BATCH], u_params[i:i + DERIVED_BATCH],
                                u_globals[i:i + DERIVED_BATCH]) for i in range(0, len(unique), DERIVED_BATCH)]
        names = ["K", "Z", "r_max", "mu_max", "mu"] + (["log_ratio"] if self.kind == "bayes" else [])
        return {k: np.concatenate([part[k] for part in parts])[inverse.ravel()] for k in names}

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
        return {"target": self.kind, "prior_lambda": self.settings.lam, "prior_logit_sd": self.settings.logit_sd,
                "prior_log_kappa_sd": self.settings.log_kappa_sd, "space": lt.space.name,
                "database_path": str(getattr(db, "path", "")), "database_version": str(getattr(db, "version", "")),
                "database_content_hash": str(getattr(db, "content_hash", "")),
                "r_threshold": lt.r_threshold, "em_likelihood": lt.likelihood.em, "ul_likelihood": lt.likelihood.ul,
                "sr_selection": lt.sr_selection}



def build_target(database=None, *, kind: str = "bayes", space_path=None, combination_matrix=None,
                 r_threshold: float = 1.3, settings: PriorSettings = PriorSettings(),
                 prior_only: bool = False) -> ProtomodelTarget:
    """The sampler's protomodel target on a database folder (default: the demo database), with the
    paper's likelihood variants (2020) and SR selection."""
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
    likelihood = LikelihoodTarget(db, combination_matrix, space=space, r_threshold=r_threshold)
    # Prior-only runs sample the bayes prior π(γ)π(θ|γ) (the paper target's π_paper is part of its score).
    return ProtomodelTarget(likelihood, "bayes" if prior_only else kind, settings, derived=not prior_only)
