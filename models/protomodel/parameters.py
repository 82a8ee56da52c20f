"""The protomodel space as the sampler's slots: one slot per candidate particle, unconstrained
parameters per slot, and the map back to physical protomodels (batched).

Slot j (particle p_j, in the order of the space file) holds, in unconstrained space:

* entry 0, ``mass``: z, the logit of the mass fraction f = sigmoid(z) within the particle's allowed
  interval: m_LSP = lo + (hi − lo)·f for the LSP, and m_j = a_j + (hi_j − a_j)·f_j with
  a_j = max(lo_j, m_LSP) for the others ([lo, hi] the particle's bounds, GeV). Every state thus has
  its LSP lightest, the mass prior (uniform on the allowed interval) is the logistic law in z, and
  moving the LSP moves the masses above it — the chain never has to squeeze the LSP under the
  lightest particle by chance;
* entries 1 … k_j, ``log κ`` of the production κ classes the slot *carries*: a class (signed pair
  and its charge conjugate, :meth:`ProtomodelSpace.kappa_classes`) is carried by the member listed
  later in the space file (t̃t̃* by t̃; q̃g̃ by q̃; χ̃⁰₂χ̃±₁ by χ̃±₁), so every κ lives in a slot and is
  switched on and off with it; it acts only when both members are active;
* then one BR logit per decay unit (:func:`~.decays.decay_units`): BR(unit) = softmax of the
  logits over the units *open* for the current masses (every channel of the unit kinematically
  open, BSM daughters active; N2/C1 three-body units only when no two-body unit is); a unit's BR
  is split evenly over its channels. A particle without an open unit does not decay in the model
  (it then gives no prediction); closed units' logits have no effect.

Members of one exchangeable group get the same number of entries (the largest in the group) so
that split/merge and identity swap can exchange them; padding logits have no effect.

Globals: ``mu_fraction`` z_μ with μ/μ_max = sigmoid(z_μ) (the ``bayes`` target's signal strength
relative to its critic bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from tdmcmc.state import SlotLayout

from .decays import OFFSHELL_THREE_BODY, decay_units
from .model import Protomodel
from .numpy_sums import pairwise_sum
from .predictions import ModelArraysBatch, Predictor, ProtomodelBatch
from .space import Pair, ProtomodelSpace
from .xsec import evaluate_stacks, kappa_lookup


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, overflow-free."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


@dataclass(frozen=True)
class PhysicalBatch:
    """Physical values of a batch of states: ``masses`` (B, S) GeV (NaN where inactive);
    ``unit_br`` (B, S, U) BR of each decay unit (0 where closed or inactive); ``kappa`` (B, n_kappa)
    κ per class (NaN unless both members are active); ``mu_fraction`` (B,) μ/μ_max;
    ``mass_fraction`` (B, S) f = sigmoid(entry 0) of every slot."""

    active: np.ndarray
    masses: np.ndarray
    unit_br: np.ndarray
    kappa: np.ndarray
    mu_fraction: np.ndarray
    mass_fraction: np.ndarray


class SlotParameters:
    """Slot layout of a protomodel space and the map from sampler states to protomodels."""

    def __init__(self, space: ProtomodelSpace) -> None:
        self.space = space
        self.pdgs = tuple(space.particles)
        self.slot = {p: j for j, p in enumerate(self.pdgs)}
        self.lsp_slot = self.slot[space.lsp]
        names = tuple(space.particles[p].name for p in self.pdgs)
        self.units = [decay_units(space.particles[p]) for p in self.pdgs]
        self.kappa_keys: tuple[Pair, ...] = tuple(space.kappa_classes())
        carrier = [max(self.slot[abs(q)] for q in key) for key in self.kappa_keys]
        self.kappa_members = np.array([[self.slot[abs(q)] for q in key] for key in self.kappa_keys], dtype=np.int64)
        carried = [[k for k, c in enumerate(carrier) if c == j] for j in range(len(self.pdgs))]
        n_kappa = np.array([len(c) for c in carried])
        n_units = np.array([len(u) for u in self.units])
        dims = 1 + n_kappa + n_units
        group_of = {p: g for g, members in enumerate(space.exchangeable) for p in members}
        for members in space.exchangeable:
            js = [self.slot[p] for p in members]
            dims[js] = dims[js].max()
        self.n_units_max = int((dims - 1 - n_kappa).max())
        self.kappa_entry = np.array([1 + carried[carrier[k]].index(k) for k in range(len(self.kappa_keys))],
                                    dtype=np.int64)
        self.kappa_slot = np.array(carrier, dtype=np.int64)
        self.logit_start = 1 + n_kappa
        self.n_logits = dims - 1 - n_kappa          # includes group padding
        self.n_units = n_units
        max_dim = int(dims.max())
        self.layout = SlotLayout(
            slot_names=names, param_names=("mass",) + tuple(f"x{i}" for i in range(1, max_dim)),
            slot_dims=tuple(int(d) for d in dims), groups=tuple(group_of.get(p, -1) for p in self.pdgs),
            global_names=("mu_fraction",), slot_dim="particle")
        self.mass_lo = np.array([space.particles[p].mass_min for p in self.pdgs])
        self.mass_hi = np.array([space.particles[p].mass_max for p in self.pdgs])
        self._unit_tables()
        self._table_map: SlotTableMap | None = None

    def _unit_tables(self) -> None:
        """Per (slot, unit): BSM daughter slot, SM threshold (GeV), three-body flag, validity."""
        s, u = len(self.pdgs), self.n_units_max
        self.unit_daughter = np.zeros((s, u), dtype=np.int64)
        self.unit_threshold = np.zeros((s, u))
        self.unit_three_body = np.zeros((s, u), bool)
        self.unit_valid = np.zeros((s, u), bool)
        sm = self.space.sm_masses
        for j, units in enumerate(self.units):
            for k, unit in enumerate(units):
                bsm = {d for ch in unit for d in ch if d in self.space.particles}
                if len(bsm) != 1:
                    raise ValueError(f"decay unit {unit} of {self.pdgs[j]} needs exactly one BSM daughter")
                self.unit_daughter[j, k] = self.slot[bsm.pop()]
                self.unit_threshold[j, k] = max(sum(sm.get(d, 0.0) for d in ch if d not in self.space.particles)
                                                for ch in unit)
                self.unit_three_body[j, k] = any(len(ch) >= 3 for ch in unit)
                self.unit_valid[j, k] = True
        self.offshell_rule = np.array([p in OFFSHELL_THREE_BODY for p in self.pdgs])

    # -- transforms ------------------------------------------------------------------------------

    def masses(self, params: np.ndarray) -> np.ndarray:
        """Masses (B, S) in GeV of every slot (active or not) from the unconstrained entry 0."""
        f = sigmoid(params[..., 0])
        m_lsp = self.mass_lo[self.lsp_slot] + (self.mass_hi[self.lsp_slot] - self.mass_lo[self.lsp_slot]) * f[:, self.lsp_slot]
        low = self.lower_bounds(m_lsp)
        return low + (self.mass_hi - low) * f

    def lower_bounds(self, m_lsp: np.ndarray) -> np.ndarray:
        """a_j = max(lo_j, m_LSP) (B, S) in GeV; the LSP's own entry is its fixed bound."""
        low = np.maximum(self.mass_lo, np.asarray(m_lsp, float)[:, None])
        low[:, self.lsp_slot] = self.mass_lo[self.lsp_slot]
        return low

    def unconstrained_mass(self, slot: int, mass: float, m_lsp: float) -> float:
        """Inverse of :meth:`masses` for one slot (GeV -> entry 0), given the LSP mass."""
        lo = self.mass_lo[slot] if slot == self.lsp_slot else max(self.mass_lo[slot], m_lsp)
        hi = self.mass_hi[slot]
        if not lo < mass < hi:
            raise ValueError(f"{self.layout.slot_names[slot]}: mass {mass} GeV outside ({lo}, {hi})")
        f = (mass - lo) / (hi - lo)
        return float(np.log(f) - np.log1p(-f))

    def physical(self, active: np.ndarray, params: np.ndarray, globals_: np.ndarray) -> PhysicalBatch:
        """Physical values of a batch of states (see :class:`PhysicalBatch`; :func:`_physical`)."""
        active = np.asarray(active, bool)
        params = np.ascontiguousarray(params, dtype=float)
        f = sigmoid(params[..., 0])
        masses, unit_br, kappa = _physical(
            active, params, f, self.mass_lo, self.mass_hi, self.lsp_slot, self.unit_daughter, self.unit_threshold,
            self.unit_three_body, self.unit_valid, self.offshell_rule, self.logit_start, self.n_units,
            self.kappa_members, self.kappa_slot, self.kappa_entry)
        return PhysicalBatch(active, masses, unit_br, kappa, sigmoid(globals_[:, 0]), f)

    def protomodels(self, batch: PhysicalBatch, names: list[str] | None = None) -> list[Protomodel]:
        """The protomodels of a batch (only active particles; decays with BR > 0; κ of active pairs)."""
        out = []
        # Python lists: element access on numpy arrays costs ~100 ns a scalar, this loop makes hundreds
        masses, unit_br, kappa = batch.masses.tolist(), batch.unit_br.tolist(), batch.kappa.tolist()
        for b, active in enumerate(batch.active):
            present = np.flatnonzero(active).tolist()
            decays = {}
            for j in present:
                if j == self.lsp_slot:
                    continue
                channels = {}
                for unit, br in zip(self.units[j], unit_br[b][j]):
                    if br > 0.0:
                        for ch in unit:
                            channels[ch] = br / len(unit)
                decays[self.pdgs[j]] = channels
            kappas = {key: k for key, k in zip(self.kappa_keys, kappa[b]) if math.isfinite(k)}
            name = names[b] if names else self.label(active)
            out.append(Protomodel(name=name, masses={self.pdgs[j]: masses[b][j] for j in present}, decays=decays,
                                  kappas=kappas))
        return out

    def table_map(self, predictor: Predictor) -> SlotTableMap:
        """The index maps from the slots to `predictor`'s table arrays (built once per predictor)."""
        if self._table_map is None or self._table_map.predictor is not predictor:
            self._table_map = SlotTableMap(self, predictor)
        return self._table_map

    def protomodel_batch(self, batch: PhysicalBatch, predictor: Predictor) -> ProtomodelBatch:
        """The protomodels of a batch with their table arrays computed directly from the physical
        values (:class:`SlotTableMap`); the :class:`Protomodel` objects are built on first access."""
        return ProtomodelBatch(self.table_map(predictor).arrays(batch), lambda: self.protomodels(batch))

    def label(self, active: np.ndarray) -> str:
        """Readable particle-set label, e.g. ``XZ1,Xt,Xd`` (space order)."""
        return ",".join(self.layout.slot_names[j] for j in np.flatnonzero(active))

    def decay_labels(self) -> list[tuple[int, int, str]]:
        """(slot, unit, label) of every decay unit, label ``"Xt>XZ1 t"`` style (group: channels joined by '|')."""
        names = {p: self.space.particles[p].name for p in self.pdgs}

        def channel(ch):
            return " ".join(names.get(d, str(d)) for d in ch)

        return [(j, k, f"{names[self.pdgs[j]]}>" + "|".join(channel(ch) for ch in unit))
                for j, units in enumerate(self.units) for k, unit in enumerate(units)]

    def kappa_labels(self) -> list[str]:
        """SModelS ``ssmultipliers``-style key per κ class, e.g. ``"-1000006,1000006"``."""
        return [f"{a},{b}" for a, b in self.kappa_keys]

    def from_protomodel(self, model: Protomodel, rng: np.random.Generator | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(active (S,), params (S, D)) of a protomodel: masses and κ exactly; logits = ln BR of
        each unit (units with BR 0 get −30, i.e. BR ≈ 1e-13 once open); unused entries 0 or, with
        `rng`, standard normal."""
        s, d = self.layout.n_slots, self.layout.max_dim
        active = np.zeros(s, bool)
        params = rng.standard_normal((s, d)) if rng is not None else np.zeros((s, d))
        for pdg, m in model.masses.items():
            j = self.slot[pdg]
            active[j] = True
            params[j, 0] = self.unconstrained_mass(j, m, model.masses[self.space.lsp])
            for k, unit in enumerate(self.units[j]):
                br = sum(model.decays.get(pdg, {}).get(ch, 0.0) for ch in unit)
                params[j, self.logit_start[j] + k] = np.log(br) if br > 0 else -30.0
        for k, key in enumerate(self.kappa_keys):
            if key in model.kappas:
                params[self.kappa_slot[k], self.kappa_entry[k]] = np.log(max(model.kappas[key], 1e-300))
            elif all(abs(q) in model.masses for q in key):
                params[self.kappa_slot[k], self.kappa_entry[k]] = 0.0
        return active, params


class SlotTableMap:
    """Index maps from the slots of a :class:`SlotParameters` to the table arrays of a
    :class:`~.predictions.Predictor`, built once: the table particle of each slot, the BR columns
    of every channel of each decay unit, the ``xsecs.kappa_keys`` class of each κ class.

    :meth:`arrays` gives the :class:`~.predictions.ModelArraysBatch` of a :class:`PhysicalBatch`
    in one vectorised pass, equal to ``predictor.model_arrays_batch(params.protomodels(batch))``
    (same values, same arithmetic: a unit's BR is split equally over its channels, σ from
    :class:`~.xsec.ChannelXsecs` at the same masses and κ).

    Attributes for the gradients: ``slot_particle`` (S,), ``unit_columns`` (S, U, C) the BR column
    of each channel of each unit (the constant column −1 beyond a unit's channels) with
    ``unit_mask`` and ``unit_size`` (S, U), ``logit_entry`` (S, U) the parameter entry of each
    unit's logit (−1: no unit), ``kappa_column`` (n_kappa,) the ``xsecs.kappa_keys`` index of each
    κ class (−1: not produced).
    """

    def __init__(self, params: SlotParameters, predictor: Predictor) -> None:
        self.params, self.predictor = params, predictor
        p, xs = params, predictor.xsecs
        n_s = len(p.pdgs)
        self.n_particles, self.n_br = len(predictor.table.particles), len(predictor.table.br_channels)
        self.slot_particle = np.array([predictor.pindex[pdg] for pdg in p.pdgs], dtype=np.int64)
        self.slot_bit = np.left_shift(np.uint64(1), self.slot_particle.astype(np.uint64))
        n_c = max((len(unit) for units in p.units for unit in units), default=1)
        self.unit_columns = np.full((n_s, p.n_units_max, n_c), -1, dtype=np.int64)
        self.unit_mask = np.zeros(self.unit_columns.shape, bool)
        self.logit_entry = np.full((n_s, p.n_units_max), -1, dtype=np.int64)
        for j, units in enumerate(p.units):
            for k, unit in enumerate(units):
                self.logit_entry[j, k] = p.logit_start[j] + k
                self.unit_mask[j, k, :len(unit)] = True
                for c, ch in enumerate(unit):
                    self.unit_columns[j, k, c] = predictor.br_index[(p.pdgs[j], ch)]
        self.unit_size = self.unit_mask.sum(axis=2)
        # the BR columns a decaying slot writes: (slot, unit) of each channel; the LSP does not decay
        decays = self.unit_mask & (np.arange(n_s) != p.lsp_slot)[:, None, None]
        self._br_slot, self._br_unit, _ = np.nonzero(decays)
        self._br_column = self.unit_columns[decays]
        self._br_size = self.unit_size[self._br_slot, self._br_unit]
        if len(set(self._br_column.tolist())) != len(self._br_column):
            raise ValueError("slot table map: a decay channel belongs to two units of one particle")
        kindex = {key: i for i, key in enumerate(xs.kappa_keys)}
        resolved = [next(iter(kappa_lookup(predictor.space, {key: 1.0})), None) for key in p.kappa_keys]
        self.kappa_column = np.array([kindex[k] if k is not None else -1 for k in resolved], dtype=np.int64)
        used = self.kappa_column[self.kappa_column >= 0]
        if len(set(used.tolist())) != len(used):
            raise ValueError("slot table map: two κ classes of the slots share one cross-section κ class")
        self._kappa_from = np.flatnonzero(self.kappa_column >= 0)
        self._kappa_to = self.kappa_column[self._kappa_from]

    def arrays(self, batch: PhysicalBatch) -> ModelArraysBatch:
        """Table arrays of a batch: masses, BRs, present bitmasks, κ per channel, σ and ∂ ln σ/∂m
        (:func:`_table_arrays`)."""
        xs = self.predictor.xsecs
        masses, br, xsec, present, dlog, kappa = _table_arrays(
            batch.active, batch.masses, batch.unit_br, batch.kappa, self.slot_particle, self.slot_bit, self._br_slot,
            self._br_unit, self._br_column, self._br_size, self._kappa_from, self._kappa_to, self.n_particles,
            self.n_br, len(xs.kappa_keys), xs.channel_kappa, len(xs.sqrts), xs.stacks)
        return ModelArraysBatch(masses, br, xsec, present, dlog, kappa, np.ones(len(masses), bool))

    def unconstrained_gradient(self, batch: PhysicalBatch, g_masses: np.ndarray, g_brs: np.ndarray,
                               g_kappas: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """Chain rule from ∂/∂(table masses (B, P) per GeV, BR columns (B, n_br), ``xsecs`` κ classes
        (B, K)) to the slot entries (B, S, D) (`shape`) of the states of `batch`
        (:func:`_unconstrained_gradient`)."""
        p = self.params
        return _unconstrained_gradient(
            batch.active, batch.masses, batch.mass_fraction, batch.unit_br, batch.kappa, g_masses, g_brs, g_kappas,
            self.slot_particle, p.lsp_slot, p.mass_lo, p.mass_hi, self.unit_columns, self.unit_mask, self.logit_entry,
            self.kappa_column, p.kappa_slot, p.kappa_entry, shape[2])


@numba.njit(cache=True)
def _table_arrays(active, slot_masses, unit_br, slot_kappa, slot_particle, slot_bit, br_slot, br_unit, br_column,
                  br_size, kappa_from, kappa_to, n_particles, n_br, n_kappa, channel_kappa, n_sqrts, stacks):
    """(masses (B, P) GeV, NaN where absent; BR columns (B, n_br + 1), the last the constant 1; σ (B, C, S) fb;
    present bitmasks (B,); ∂ ln σ/∂m (B, C, S, 2); κ per channel (B, C)) of a batch
    (:meth:`SlotTableMap.arrays`): a unit's BR split evenly over its channels (0 where not > 0),
    κ of the classes given (finite), else 1, σ by :func:`.xsec.evaluate_stacks`. The values of the
    numpy formulation it replaced (scatters, one division per BR, no sums)."""
    n_b, n_s = active.shape
    masses = np.full((n_b, n_particles), np.nan)
    br = np.zeros((n_b, n_br + 1))
    present = np.zeros(n_b, dtype=np.uint64)
    kappa = np.ones((n_b, n_kappa))
    for b in range(n_b):
        bits = np.uint64(0)
        for j in range(n_s):
            masses[b, slot_particle[j]] = slot_masses[b, j]
            if active[b, j]:
                bits |= slot_bit[j]
        present[b] = bits
        br[b, n_br] = 1.0
        for q in range(len(br_column)):
            u = unit_br[b, br_slot[q], br_unit[q]]
            br[b, br_column[q]] = u / br_size[q] if u > 0.0 else 0.0
        for q in range(len(kappa_from)):
            given = slot_kappa[b, kappa_from[q]]
            kappa[b, kappa_to[q]] = given if np.isfinite(given) else 1.0
    xsec = np.zeros((n_b, len(channel_kappa), n_sqrts))
    dlog = np.zeros((n_b, len(channel_kappa), n_sqrts, 2))
    evaluate_stacks(masses, kappa, stacks, xsec, dlog)
    channel = np.empty((n_b, len(channel_kappa)))
    for b in range(n_b):
        for c in range(len(channel_kappa)):
            channel[b, c] = kappa[b, channel_kappa[c]]
    return masses, br, xsec, present, dlog, channel


@numba.njit(cache=True)
def _unconstrained_gradient(active, masses, f, unit_br, kappa, g_masses, g_brs, g_kappas, slot_particle, lsp,
                            mass_lo, mass_hi, unit_columns, unit_mask, logit_entry, kappa_column, kappa_slot,
                            kappa_entry, n_entries):
    """Slot-entry gradient (B, S, D) of ∂/∂(masses, BR columns, κ classes) (:meth:`SlotTableMap.
    unconstrained_gradient`):

    * masses: m_j = a_j + (hi_j − a_j) f_j with a_j = max(lo_j, m_LSP), f = sigmoid(entry 0), so
      ∂/∂z_j = g_j (hi_j − a_j) f_j (1 − f_j), and the LSP's entry also moves every m_j with
      a_j = m_LSP: + Σ_j g_j (1 − f_j) (hi_LSP − lo_LSP) f_LSP (1 − f_LSP);
    * BR logits: a unit's BR is shared evenly by its channels (ḡ_unit = mean of the channels'),
      softmax over the open units: ∂/∂logit_k = BR_k (ḡ_k − Σ_u BR_u ḡ_u);
    * ln κ: ∂/∂ln κ = κ ∂/∂κ, for the classes whose particles are both active (finite κ).

    Same arithmetic, in the same order, as the numpy formulation it replaces (sums over slots and
    units: :func:`.numpy_sums.pairwise_sum`)."""
    n_b, n_s = active.shape
    n_u, n_c = unit_columns.shape[1], unit_columns.shape[2]
    out = np.zeros((n_b, n_s, n_entries))
    g_m = np.empty(n_s)
    dm_dz = np.empty(n_s)
    follow = np.empty(n_s)
    g_unit = np.empty(n_u)
    weighted = np.empty(n_u)
    channel = np.empty(n_c)
    for b in range(n_b):
        m_lsp = masses[b, lsp]
        for j in range(n_s):
            g_m[j] = g_masses[b, slot_particle[j]]
            low = mass_lo[j]
            if j != lsp and not m_lsp <= low:            # np.maximum: NaN wins
                low = m_lsp
            dm_dz[j] = (mass_hi[j] - low) * f[b, j] * (1.0 - f[b, j])
            if active[b, j]:
                out[b, j, 0] = g_m[j] * dm_dz[j]
            follows = active[b, j] and m_lsp > mass_lo[j] and j != lsp
            follow[j] = g_m[j] * (1.0 - f[b, j]) if follows else 0.0
        out[b, lsp, 0] = (g_m[lsp] + pairwise_sum(follow)) * dm_dz[lsp]
        for j in range(n_s):
            if not active[b, j]:
                continue
            for k in range(n_u):
                size = 0
                for c in range(n_c):
                    channel[c] = g_brs[b, unit_columns[j, k, c]] if unit_mask[j, k, c] else 0.0
                    size += unit_mask[j, k, c]
                g_unit[k] = pairwise_sum(channel) / max(size, 1)
                weighted[k] = unit_br[b, j, k] * g_unit[k]
            mean = pairwise_sum(weighted)
            for k in range(n_u):
                if logit_entry[j, k] >= 0:
                    out[b, j, logit_entry[j, k]] = unit_br[b, j, k] * (g_unit[k] - mean)
        for q in range(len(kappa_slot)):
            value = 0.0
            if np.isfinite(kappa[b, q]):
                value = kappa[b, q] * (g_kappas[b, kappa_column[q]] if kappa_column[q] >= 0 else 0.0)
            out[b, kappa_slot[q], kappa_entry[q]] = value
    return out


@numba.njit(cache=True, inline="always")
def slot_masses(f, mass_lo, mass_hi, lsp, out):
    """The masses (S,) GeV of one state's slots from their mass fractions f (S,) into `out`:
    :meth:`SlotParameters.masses` with its arithmetic (np.maximum's NaN rule included)."""
    m_lsp = mass_lo[lsp] + (mass_hi[lsp] - mass_lo[lsp]) * f[lsp]
    for j in range(len(f)):
        low = mass_lo[j]
        if j != lsp and not m_lsp <= low:          # np.maximum: NaN wins
            low = m_lsp
        out[j] = low + (mass_hi[j] - low) * f[j]


@numba.njit(cache=True)
def _physical(active, params, f, mass_lo, mass_hi, lsp, unit_daughter, unit_threshold, unit_three_body, unit_valid,
              offshell_rule, logit_start, n_units, kappa_members, kappa_slot, kappa_entry):
    """(masses (B, S) GeV, NaN where inactive; unit BRs (B, S, U); κ (B, K), NaN unless both members
    are active) of a batch (:meth:`SlotParameters.physical`): the masses of :meth:`SlotParameters.masses`
    from the fractions `f`; a unit is open when its daughter is active and m > m_daughter + its SM
    threshold (N2/C1 three-body units only when no two-body unit is); BR = softmax of the open
    units' logits (shifted by the largest, normalised by a :func:`.numpy_sums.pairwise_sum`); κ = exp(ln κ).
    State by state, with the operations of the numpy formulation in tests/models/test_slot_arrays.py
    in the same order (equal to the bit, tested)."""
    n_b, n_s = active.shape
    n_u = unit_daughter.shape[1]
    masses = np.empty((n_b, n_s))
    unit_br = np.zeros((n_b, n_s, n_u))
    kappa = np.empty((n_b, len(kappa_slot)))
    m = np.empty(n_s)
    open_ = np.empty(n_u, dtype=np.bool_)
    logits = np.empty(n_u)
    weights = np.empty(n_u)
    for b in range(n_b):
        slot_masses(f[b], mass_lo, mass_hi, lsp, m)
        for j in range(n_s):
            masses[b, j] = m[j] if active[b, j] else np.nan
        for j in range(n_s):
            if not active[b, j]:
                continue
            two_body_open = False
            for k in range(n_u):
                d = unit_daughter[j, k]
                open_[k] = unit_valid[j, k] and active[b, d] and m[j] > m[d] + unit_threshold[j, k]
                two_body_open = two_body_open or (open_[k] and not unit_three_body[j, k])
            top = -np.inf
            for k in range(n_u):
                if offshell_rule[j] and unit_three_body[j, k] and two_body_open:
                    open_[k] = False
                logits[k] = (params[b, j, logit_start[j] + k] if k < n_units[j] else 0.0) if open_[k] else -np.inf
                top = np.nan if np.isnan(logits[k]) or np.isnan(top) else max(top, logits[k])     # np.max
            shift = top if np.isfinite(top) else 0.0
            for k in range(n_u):
                weights[k] = np.exp(logits[k] - shift) if open_[k] else 0.0
            total = pairwise_sum(weights)
            if total > 0:
                for k in range(n_u):
                    unit_br[b, j, k] = weights[k] / total
        for q in range(len(kappa_slot)):
            both = active[b, kappa_members[q, 0]] and active[b, kappa_members[q, 1]]
            kappa[b, q] = np.exp(params[b, kappa_slot[q], kappa_entry[q]]) if both else np.nan
    return masses, unit_br, kappa
