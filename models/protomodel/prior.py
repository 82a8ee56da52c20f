"""The protomodel prior (DESIGN §6, ``bayes`` target): a ``pm.Model`` for the continuous
parameters plus the structure of the particle content, batched over sampler states.

    π(γ, θ, μ) = π(γ) · π(θ | γ) · π(μ | θ)

* π(γ) ∝ exp(−λ n_particles) on the *allowed* particle sets: the LSP is always present, and for
  every ordering pair (lighter, heavier) the heavier particle only with the lighter. Normalised by
  exact enumeration of the allowed sets (:meth:`ProtomodelPrior.allowed_sets`).
* masses: m_LSP ~ U(lo_LSP, hi_LSP); every other active particle uniform on
  A_j(m_LSP) = [a_j, hi_j] minus its mass-veto interval (a_j = max(lo_j, m_LSP)), independently,
  conditioned on the ordering pairs (m_light < m_heavy). Members of an ordering component must share bounds and
  vetoes (checked), so the ordering constraint has probability ext/k! under the product of
  uniforms (ext = linear extensions of the k active members' order) and the normaliser is exact:
  log π(m | γ, m_LSP) = −Σ_j log|A_j(m_LSP)| + Σ_components log(k!/ext). The marginal of m_LSP is
  uniform whatever γ.
* BR logits ~ N(0, σ_logit²) per decay unit, log κ ~ N(0, σ_κ²) per κ class (in its carrier slot,
  :mod:`.parameters`), μ/μ_max ~ U(0, 1) (so μ ~ U(0, μ_max(θ)): the critic bound).

The ``pm.Model`` (:meth:`ProtomodelPrior.pm_model`) declares the mass fractions within
[a_j, hi_j] (:mod:`.parameters`) as ``Uniform(0, 1)``,
logits and log κ as ``Normal`` and ``mu_fraction`` as ``Uniform(0, 1)``; its unconstrained
variables (interval transforms) are the sampler's parameters, and its log density with Jacobians
is evaluated batched with masks for the active slots (:class:`tdmcmc.pymc_prior.BatchedModelLogp`).
The structural terms above (indicators, conditioning on m_LSP, vetoes, ordering) are added in numpy,
with exact gradients (piecewise, the support's edges are hard walls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from tdmcmc.errors import UserError

from .parameters import SlotParameters, sigmoid


@dataclass(frozen=True)
class PriorSettings:
    """λ of π(γ) ∝ exp(−λ n); standard deviations of the BR logits and of ln κ."""

    lam: float = 1.0
    logit_sd: float = 1.0
    log_kappa_sd: float = 1.0


class ProtomodelPrior:
    """Batched log prior and gradient on the slots of :class:`SlotParameters` (module docstring)."""

    def __init__(self, params: SlotParameters, settings: PriorSettings = PriorSettings()) -> None:
        self.params, self.settings = params, settings
        space = params.space
        self.n_kappa = params.logit_start - 1
        self.kappa_width = int(max(self.n_kappa.max(), 1))
        self.pairs = np.array([(params.slot[a], params.slot[b]) for a, b in space.ordering], dtype=np.int64).reshape(-1, 2)
        self.components = self._components()
        # per component: Σ log(k!/ext) of each subset of its members, indexed by the subset's bit code
        self._ordering = [(members, np.array([self._log_k_over_ext(members, c) for c in range(1 << len(members))]))
                          for members in self.components]
        self._kappa_entries = self._entries(1, self.n_kappa, self.kappa_width)
        self._logit_entries = self._entries(params.logit_start, params.n_logits, params.n_units_max)
        self.veto = self._veto_table()
        sets = self.allowed_sets()
        n = sets.sum(axis=1)
        self.log_norm_gamma = float(np.log(np.exp(-settings.lam * (n - n.min())).sum()) - settings.lam * n.min())
        self._batched = None

    # -- structure -------------------------------------------------------------------------------

    def _components(self) -> list[np.ndarray]:
        """Connected components (slot arrays) of the ordering graph; members must share support."""
        p, space = self.params, self.params.space
        parent = list(range(p.layout.n_slots))

        def find(i):
            while parent[i] != i:
                i = parent[i]
            return i

        for a, b in self.pairs:
            parent[find(a)] = find(b)
        groups: dict[int, list[int]] = {}
        for a in set(self.pairs.ravel().tolist()):
            groups.setdefault(find(a), []).append(a)
        out = []
        for members in groups.values():
            vetoed = {tuple(v.name for v in space.vetoes if p.pdgs[j] in v.particles) for j in members}
            bounds = {(p.mass_lo[j], p.mass_hi[j]) for j in members}
            if len(vetoed) > 1 or len(bounds) > 1:
                names = [p.layout.slot_names[j] for j in members]
                raise UserError(f"{space.source}: ordering: particles {names} are ordered but differ in mass bounds "
                                "or vetoes; the prior's ordering normaliser needs them equal")
            if len(members) > 8:
                raise UserError(f"{space.source}: ordering: a chain of {len(members)} ordered particles is too long")
            out.append(np.array(sorted(members)))
        return out

    def _veto_table(self) -> np.ndarray:
        """(S, 3) per slot: max_mass, min_gap, max_gap of its veto (max_mass −inf: none)."""
        p = self.params
        table = np.tile([-np.inf, 0.0, 0.0], (p.layout.n_slots, 1))
        for v in p.space.vetoes:
            for pdg in v.particles:
                j = p.slot.get(pdg)
                if j is None:
                    continue
                if np.isfinite(table[j, 0]):
                    raise UserError(f"{p.space.source}: mass_veto: particle {pdg} is in two vetoes")
                table[j] = (v.max_mass, v.min_gap, v.max_gap)
        return table

    def allowed_sets(self) -> np.ndarray:
        """Every allowed particle set as a (n_sets, S) boolean matrix (exact enumeration)."""
        p = self.params
        others = [j for j in range(p.layout.n_slots) if j != p.lsp_slot]
        if len(others) > 24:
            raise UserError(f"{p.space.source}: {len(others) + 1} particles are too many to enumerate the prior")
        codes = np.arange(1 << len(others), dtype=np.int64)
        sets = np.zeros((len(codes), p.layout.n_slots), bool)
        sets[:, p.lsp_slot] = True
        for bit, j in enumerate(others):
            sets[:, j] = (codes >> bit) & 1 == 1
        ok = self.allowed(sets)
        return sets[ok]

    def allowed(self, active: np.ndarray) -> np.ndarray:
        """(B,) whether each particle set is allowed (LSP present, ordering pairs respected)."""
        ok = active[:, self.params.lsp_slot].copy()
        for a, b in self.pairs:
            ok &= active[:, a] | ~active[:, b]
        return ok

    def exact_n_particles(self) -> dict[int, float]:
        """Prior probability of each number of particles (LSP included)."""
        n = self.allowed_sets().sum(axis=1)
        w = np.exp(-self.settings.lam * n - self.log_norm_gamma)
        return {int(k): float(w[n == k].sum()) for k in np.unique(n)}

    def exact_inclusion(self) -> np.ndarray:
        """Prior inclusion probability of each slot (S,)."""
        sets = self.allowed_sets()
        w = np.exp(-self.settings.lam * sets.sum(axis=1) - self.log_norm_gamma)
        return w @ sets

    def support_length(self, m_lsp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """|A_j(m_LSP)| (B, S) in GeV and its derivative w.r.t. m_LSP."""
        p = self.params
        ml = np.asarray(m_lsp, float)[:, None]
        lo_eff = np.maximum(p.mass_lo, ml)
        d_lo = (ml > p.mass_lo) * 1.0
        max_mass, min_gap, max_gap = self.veto.T
        upper = np.minimum(np.minimum(ml + max_gap, max_mass), p.mass_hi)
        lower = np.maximum(ml + min_gap, lo_eff)
        vetoed = np.isfinite(max_mass) & (upper > lower)
        d_upper = ((ml + max_gap) < np.minimum(max_mass, p.mass_hi)) * 1.0
        d_lower = np.where(ml + min_gap >= lo_eff, 1.0, d_lo)
        length = p.mass_hi - lo_eff - np.where(vetoed, upper - lower, 0.0)
        return length, -d_lo - np.where(vetoed, d_upper - d_lower, 0.0)

    def _ordering_log_norm(self, active: np.ndarray) -> np.ndarray:
        """Σ_components log(k!/ext) of the active members, (B,)."""
        out = np.zeros(active.shape[0])
        for members, table in self._ordering:
            code = (active[:, members] * (1 << np.arange(len(members)))).sum(axis=1)
            out += table[code]
        return out

    def _log_k_over_ext(self, members: np.ndarray, code: int) -> float:
        present = [int(j) for i, j in enumerate(members) if code >> i & 1]
        pairs = [(a, b) for a, b in self.pairs if a in present and b in present]
        ext = sum(all(order.index(a) < order.index(b) for a, b in pairs) for order in permutations(present))
        return math.log(math.factorial(len(present)) / ext)

    def structural(self, active: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log π(γ) + mass-structure terms (−inf outside the support), and the gradient w.r.t. the
        unconstrained LSP mass entry (B,).

        In the sampler's coordinates (:mod:`.parameters`) a non-LSP mass is uniform on
        [a_j, hi_j] through its ``Uniform(0, 1)`` fraction; restricting it to A_j (cutting the veto
        interval) multiplies the density by (hi_j − a_j)/|A_j| inside A_j and 0 in the veto."""
        p = self.params
        active = np.asarray(active, bool)
        masses = p.masses(params)
        lsp = p.lsp_slot
        m_lsp = masses[:, lsp]
        others = active.copy()
        others[:, lsp] = False
        length, d_length = self.support_length(m_lsp)
        low = p.lower_bounds(m_lsp)
        d_low = (m_lsp[:, None] > p.mass_lo) * 1.0
        max_mass, min_gap, max_gap = self.veto.T
        gap = masses - m_lsp[:, None]
        in_veto = (masses < max_mass) & (gap > min_gap) & (gap < max_gap)
        bad = (others & in_veto).any(axis=1)
        for a, b in self.pairs:
            bad |= active[:, a] & active[:, b] & (masses[:, b] <= masses[:, a])
        bad |= ~self.allowed(active)
        n = active.sum(axis=1)
        width = p.mass_hi - low
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(others, np.log(width) - np.log(length), 0.0).sum(axis=1)
            d_m_lsp = np.where(others, -d_low / width - d_length / length, 0.0).sum(axis=1)
        value = -self.settings.lam * n - self.log_norm_gamma + terms + self._ordering_log_norm(active)
        sig = sigmoid(params[:, lsp, 0])
        dz = d_m_lsp * (p.mass_hi[lsp] - p.mass_lo[lsp]) * sig * (1.0 - sig)
        return np.where(bad, -np.inf, value), np.where(bad, 0.0, dz)

    # -- the pm.Model --------------------------------------------------------------------------------

    def pm_model(self):
        """The continuous priors as a ``pm.Model`` (every slot's variables, active or not)."""
        import pymc as pm

        p, st = self.params, self.settings
        s = p.layout.n_slots
        # static shapes (no dims): BatchedModelLogp vectorises over a leading batch axis
        with pm.Model() as model:
            pm.Uniform("mass_fraction", 0.0, 1.0, shape=(s,))
            pm.Normal("log_kappa", 0.0, st.log_kappa_sd, shape=(s, self.kappa_width))
            pm.Normal("br_logit", 0.0, st.logit_sd, shape=(s, p.n_units_max))
            pm.Uniform("mu_fraction", 0.0, 1.0)
        return model

    def _entries(self, start: np.ndarray, count: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot, entry) index arrays (S, width) of a padded per-slot block — slot j's entries
        start[j], ..., start[j] + count[j] − 1 of its parameter row — and the (S, width) mask of
        real entries."""
        s = self.params.layout.n_slots
        k = np.arange(width)
        mask = k[None, :] < np.asarray(count)[:, None]
        entry = np.where(mask, np.broadcast_to(start, (s,))[:, None] + k[None, :], 0)
        return np.broadcast_to(np.arange(s)[:, None], (s, width)), entry, mask

    def _values_and_masks(self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray):
        a = np.asarray(active, float)
        values = {"mass_fraction_interval__": params[:, :, 0], "mu_fraction_interval__": globals_[:, 0]}
        masks = {"mass_fraction_interval__": a, "mu_fraction_interval__": np.ones(len(a))}
        for name, (slot, entry, mask) in (("log_kappa", self._kappa_entries), ("br_logit", self._logit_entries)):
            values[name] = np.where(mask, params[:, slot, entry], 0.0)
            masks[name] = a[:, :, None] * mask
        return values, masks

    def log_prior(self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log π (B,), ∂/∂params (B, S, D), ∂/∂globals (B, G)) in unconstrained space, with Jacobians."""
        from tdmcmc.pymc_prior import BatchedModelLogp

        if self._batched is None:
            self._batched = BatchedModelLogp(self.pm_model())
        p = self.params
        values, masks = self._values_and_masks(active, params, globals_)
        continuous, grads = self._batched(values, masks)
        structural, d_lsp = self.structural(active, params)
        g_params = np.zeros_like(params)
        g_params[:, :, 0] = grads["mass_fraction_interval__"]
        g_params[:, p.lsp_slot, 0] += d_lsp
        for name, (slot, entry, mask) in (("log_kappa", self._kappa_entries), ("br_logit", self._logit_entries)):
            g_params[:, slot[mask], entry[mask]] = np.asarray(grads[name])[:, mask]
        g_globals = np.asarray(grads["mu_fraction_interval__"]).reshape(-1, 1)
        return continuous + structural, g_params, g_globals
