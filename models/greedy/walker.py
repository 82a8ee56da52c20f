"""One greedy walker of arXiv:2012.12246 (method reference §2; every deviation: docs/greedy.md).

A step (§2.2): prune the particles absent from the current best combination; propose by the
sub-moves of §2.3 in sequence (birth, BR change, κ change, death, mass change); build the merged
copy (§2.4); score both with the objective and keep the merged copy if its K is larger; revert if
K is None; absorb μ̂ into every κ; offer the proposal to the hiscore list; accept with probability
min(1, exp((K_new − K_old)/2)) (§2.5). Teleportation (§2.6) was off in the paper runs and is not
implemented.

The state is a plain protomodel (masses GeV by PDG id, BRs per space channel, κ per shared κ key
of the space's production channels) that never leaves the space: mass bounds (the walls), the
ordering pairs, the mass vetoes, the LSP the lightest, BRs normalised over open channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tdmcmc.models.protomodel.decays import OFFSHELL_THREE_BODY, decay_units
from tdmcmc.models.protomodel.model import Protomodel
from tdmcmc.models.protomodel.space import Pair, ProtomodelSpace
from tdmcmc.models.protomodel.xsec import cross_sections

from .hiscores import Hiscores
from .objective import PaperObjective, PaperScore

START_K = -20.0                 # the original's "always accept" sentinel
KAPPA_MOVE_CAP = 1.0e4          # changeSSM cap
KAPPA_RENORM_CAP = 1.0e5        # cap after BR renormalisation
KAPPA_KNOCKOUT = 1.0e-5
MAX_DX = 1.0e6                  # GeV: a mass redraw gives up beyond this step size
# [HEAD] fixed BRs of off-shell N2 / C1 (only their three-body channels open), per channel
OFFSHELL_BRS = {
    1000023: {(1000022, 2, 2): 12 / 18, (1000022, 5, 5): 3 / 18, (1000022, 11, 11): 1 / 18,
              (1000022, 13, 13): 1 / 18, (1000022, 15, 15): 1 / 18},
    1000024: {(1000022, 2, 1): 6 / 9, (1000022, 11, 12): 1 / 9, (1000022, 13, 14): 1 / 9,
              (1000022, 15, 16): 1 / 9},
}
VARIANTS = ("paper", "head")


@dataclass(frozen=True)
class WalkerSettings:
    """Move parameters (defaults: ``Manipulator.randomlyChangeModel`` of the paper runs).

    ``variant``: ``paper`` (mass redraws loop until legal) or ``head`` (give up after 20 redraws
    and keep the mass). ``max_redraws`` bounds the ``paper`` loop (dx grows ×1.2 per redraw, so
    it is never reached in practice).
    """

    sigma_unfreeze: float = 0.5
    prob_br: float = 0.2
    prob_ss: float = 0.25
    prob_ss_single: float = 0.8
    ssm_sigma: float = 0.1
    sigma_freeze: float = 0.5
    prob_massive: float = 0.3
    prob_mass: float = 0.05
    dx: float = 200.0
    merge_dm: float = 200.0
    prob_zero_br: float = 0.05
    prob_single_br: float = 0.05
    lsp_start: tuple[float, float] = (200.0, 500.0)
    variant: str = "paper"
    max_redraws: int = 10000

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {self.variant!r}")


@dataclass
class WalkerState:
    """A protomodel under construction plus the score of its last evaluation (None before).

    ``mu_max``, ``r_max`` are after μ̂ absorption (the critic numbers of the stored κ)."""

    masses: dict[int, float]
    decays: dict[int, dict[tuple[int, ...], float]]
    kappas: dict[Pair, float]
    score: PaperScore | None = None
    K: float | None = None
    mu_max: float = math.inf
    r_max: float = 0.0

    @property
    def Z(self) -> float | None:
        return None if self.score is None else self.score.Z

    def copy(self) -> WalkerState:
        return replace(self, masses=dict(self.masses), decays={p: dict(d) for p, d in self.decays.items()},
                       kappas=dict(self.kappas))

    def to_protomodel(self, name: str = "greedy") -> Protomodel:
        decays = {p: {ch: br for ch, br in d.items() if br > 0.0} for p, d in self.decays.items()}
        return Protomodel(name=name, masses=dict(self.masses), decays=decays, kappas=dict(self.kappas))


@dataclass
class StepRecord:
    """What one step did: the K of the state kept, of the proposal (None: not scorable), acceptance."""

    K: float | None
    K_proposed: float | None
    accepted: bool
    n_particles: int
    particles: tuple[int, ...] = ()  # PDG ids of the state kept, sorted


class Manipulator:
    """The moves and deterministic transformations of §2.3–§2.4 on a :class:`WalkerState`."""

    def __init__(self, space: ProtomodelSpace, rng: np.random.Generator, settings: WalkerSettings):
        self.space, self.rng, self.settings = space, rng, settings
        self.lsp = space.lsp
        self.n_total = len(space.particles)
        self.kappa_classes = space.kappa_classes()
        self.units = {p: decay_units(space.particles[p]) for p in space.particles}

    # -- helpers -----------------------------------------------------------------------------------

    def choice(self, items: list) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def non_lsp(self, s: WalkerState) -> list[int]:
        return [p for p in s.masses if p != self.lsp]

    def channel_open(self, s: WalkerState, pid: int, channel: tuple[int, ...]) -> bool:
        total = 0.0
        for d in channel:
            if d in self.space.particles:
                if d not in s.masses or d == pid:
                    return False
                total += s.masses[d]
            else:
                total += self.space.sm_masses.get(d, 0.0)
        return total < s.masses[pid]

    def open_units(self, s: WalkerState, pid: int) -> list[tuple[tuple[int, ...], ...]]:
        """Open units; N2/C1 three-body channels open only when no two-body channel is ([HEAD] off-shell rule)."""
        units = [u for u in self.units[pid] if all(self.channel_open(s, pid, ch) for ch in u)]
        if pid in OFFSHELL_THREE_BODY:
            two_body = [u for u in units if len(u[0]) == 2]
            units = two_body if two_body else [u for u in units if len(u[0]) == 3]
        return units

    def unit_brs(self, s: WalkerState, pid: int, units) -> list[float]:
        return [sum(s.decays.get(pid, {}).get(ch, 0.0) for ch in u) for u in units]

    def set_unit_brs(self, s: WalkerState, pid: int, units, brs) -> None:
        total = float(sum(brs))
        s.decays[pid] = {ch: b / total / len(u) for u, b in zip(units, brs) for ch in u if b > 0.0}

    def vetoed(self, s: WalkerState, pid: int, mass: float, lsp_mass: float | None = None) -> bool:
        m_lsp = s.masses[self.lsp] if lsp_mass is None else lsp_mass
        return any(pid in v.particles and mass < v.max_mass and v.min_gap < mass - m_lsp < v.max_gap
                   for v in self.space.vetoes)

    def lsp_vetoed(self, s: WalkerState, lsp_mass: float) -> bool:
        return any(self.vetoed(s, p, s.masses[p], lsp_mass) for p in self.non_lsp(s))

    def bounds(self, s: WalkerState, pid: int) -> tuple[float, float]:
        """Mass interval (GeV) of a particle given the others: LSP below everything, the walls,
        the ordering partners (the tighter bound when a particle is in several pairs)."""
        part = self.space.particles[pid]
        if pid == self.lsp:
            others = [s.masses[p] for p in self.non_lsp(s)]
            return part.mass_min, min(others + [part.mass_max])
        lo, hi = max(part.mass_min, s.masses[self.lsp]), part.mass_max
        for light, heavy in self.space.ordering:
            if pid == light and heavy in s.masses:
                hi = min(hi, s.masses[heavy])
            elif pid == heavy and light in s.masses:
                lo = max(lo, s.masses[light])
        return lo, hi

    # -- branchings and κ ------------------------------------------------------------------------

    def set_random_branchings(self, s: WalkerState, pid: int) -> bool:
        """BR_raw = max(0, N(1/n, √(0.5/n))) per open unit, normalised (§1.5); off-shell N2/C1 get
        the fixed [HEAD] BRs. False if no channel is open."""
        units = self.open_units(s, pid)
        if not units:
            return False
        if pid in OFFSHELL_BRS and len(units[0][0]) == 3:
            fixed = OFFSHELL_BRS[pid]
            self.set_unit_brs(s, pid, units, [sum(fixed.get(ch, 0.0) for ch in u) or 1.0 / len(units) for u in units])
            return True
        n = len(units)
        brs = [max(0.0, float(self.rng.normal(1.0 / n, math.sqrt(0.5 / n)))) for _ in units]
        if sum(brs) == 0.0:
            brs[int(self.rng.integers(n))] = 1.0
        self.set_unit_brs(s, pid, units, brs)
        return True

    def init_kappas(self, s: WalkerState, pid: int) -> None:
        """κ = 1 (unless present) for every production of `pid` with present particles (§1.6)."""
        for key, channels in self.kappa_classes.items():
            members = {abs(p) for p in channels[0].pair}
            if pid in members and members <= s.masses.keys():
                s.kappas.setdefault(key, 1.0)

    def remove_all_offshell(self, s: WalkerState, rescale: bool = True) -> None:
        """Drop closed channels and renormalise; κ × BR_tot² (pair) or × BR_tot (associated),
        capped at 1e5, so σ×BR of the surviving channels stays (``removeAllOffshell``). A particle
        left without channels gets fresh random BRs over its open ones, or is frozen if none is open."""
        again = True
        while again:
            again = False
            for pid in self.non_lsp(s):
                units = self.open_units(s, pid)
                allowed = {ch for u in units for ch in u}
                decays = {ch: br for ch, br in s.decays.get(pid, {}).items() if ch in allowed and br > 0.0}
                total = sum(decays.values())
                if total <= 0.0:
                    if not self.set_random_branchings(s, pid):
                        self.freeze(s, pid, force=True)
                        again = True
                        break
                    continue
                s.decays[pid] = {ch: br / total for ch, br in decays.items()}
                if rescale and abs(total - 1.0) >= 1e-4:
                    for key in list(s.kappas):
                        hits = sum(abs(p) == pid for p in key)
                        if hits:
                            s.kappas[key] = min(KAPPA_RENORM_CAP, s.kappas[key] * total ** hits)

    # -- freeze / unfreeze -----------------------------------------------------------------------

    def freeze(self, s: WalkerState, pid: int, force: bool = False) -> bool:
        """``freezeParticle``: unless forced, refuse if fewer than 2 non-LSP particles are present
        or if `pid` is the lighter of an ordering pair whose heavier member is present (a forced
        freeze takes that heavier member along)."""
        if not force:
            if len(self.non_lsp(s)) < 2:
                return False
            if any(pid == light and heavy in s.masses for light, heavy in self.space.ordering):
                return False
        s.masses.pop(pid, None)
        s.decays.pop(pid, None)
        for key in [k for k in s.kappas if pid in (abs(k[0]), abs(k[1]))]:
            del s.kappas[key]
        for light, heavy in self.space.ordering:     # forced only: a heavier partner goes too
            if light == pid and heavy in s.masses:
                self.freeze(s, heavy, force=True)
        self.remove_all_offshell(s, rescale=True)
        return True

    def unfreeze(self, s: WalkerState, pid: int) -> bool:
        """``unFreezeParticle``: m ~ U(lower, upper) within the bounds, redrawn in vetoed regions;
        random BRs and κ = 1 for its productions. True if the move counts as a change."""
        lo, hi = self.bounds(s, pid)
        if not lo < hi:
            return False
        for _ in range(self.settings.max_redraws):
            mass = float(self.rng.uniform(lo, hi))
            if not self.vetoed(s, pid, mass):
                break
        else:
            return False
        s.masses[pid] = mass
        if not self.set_random_branchings(s, pid):
            del s.masses[pid]      # no open channel: frozen again at once (see docs/greedy.md)
            return True
        self.init_kappas(s, pid)
        return True

    # -- the proposal moves (§2.3) -------------------------------------------------------------------

    def randomly_unfreeze(self, s: WalkerState, z: float, force: bool = False) -> int:
        n = len(s.masses)
        if not force and n > 1:
            mu = 1.0 - 0.7 / max(1.0, z + 1.0)
            if self.rng.normal(mu, self.settings.sigma_unfreeze) < n / self.n_total:
                return 0
        frozen = [p for p in self.space.particles if p not in s.masses]
        if not frozen:
            return 0
        pid = self.choice(frozen)
        for light, heavy in self.space.ordering:
            if pid == heavy and light not in s.masses:
                pid = light
                break
        if any(pid == heavy and light not in s.masses for light, heavy in self.space.ordering):
            return 0
        return int(self.unfreeze(s, pid))

    def randomly_change_branchings(self, s: WalkerState) -> int:
        st = self.settings
        if self.rng.random() < 1.0 - st.prob_br:
            return 0
        candidates = self.non_lsp(s)
        if len(candidates) < 2:
            return 0
        pid = self.choice(candidates)
        units = self.open_units(s, pid)
        if len(units) < 2:
            return 0
        if self.rng.random() < st.prob_single_br:
            keep = int(self.rng.integers(len(units)))
            self.set_unit_brs(s, pid, units, [1.0 if i == keep else 0.0 for i in range(len(units))])
            return 1
        dx = 0.1 / math.sqrt(len(units))
        brs = []
        for old in self.unit_brs(s, pid, units):
            if old > 0.0 and self.rng.random() < st.prob_zero_br:
                brs.append(0.0)
                continue
            brs.append(float(self.rng.uniform(max(0.0, old - dx), min(old + dx, 1.0))))
        if sum(brs) == 0.0:
            brs[int(self.rng.integers(len(units)))] = 1.0
        self.set_unit_brs(s, pid, units, brs)
        return 1

    def randomly_change_kappas(self, s: WalkerState) -> int:
        st = self.settings
        if self.rng.random() < 1.0 - st.prob_ss:
            return 0
        candidates = self.non_lsp(s)
        if len(candidates) < 2:
            return 0
        if self.rng.random() < st.prob_ss_single:
            return self._change_kappas_of_one(s, candidates)
        p, q = self.choice(candidates), self.choice(candidates)
        if not self.space.particles[p].self_conjugate and self.rng.random() < 0.5:
            p = -p
        if not self.space.particles[q].self_conjugate and self.rng.random() < 0.5:
            q = -q
        key = self.space.kappa_key((min(p, q), max(p, q)))
        if key not in self.kappa_classes:
            return 1        # the original created a κ for a pair without a process: no effect
        kappa = s.kappas.setdefault(key, 1.0)
        new = kappa * self.rng.normal(1.0, st.ssm_sigma) + self.rng.normal(0.1, 0.1)
        s.kappas[key] = min(KAPPA_MOVE_CAP, max(0.0, float(new)))
        return 1

    def _change_kappas_of_one(self, s: WalkerState, candidates: list[int]) -> int:
        pid = self.choice(candidates)
        a = self.rng.random()
        keys = list(s.kappas)
        if not keys:
            return 0
        if a > 0.9:
            s.kappas[self.choice(keys)] = KAPPA_KNOCKOUT
            return 1
        if a < 0.1:
            s.kappas[self.choice(keys)] = 1.0
            return 1
        if 0.1 < a < 0.2:
            key = self.choice(keys)
            s.kappas[key] = s.kappas[self.choice(keys)]
            return 1
        f = float(self.rng.uniform(0.8, 1.2))
        for key in keys:
            if pid in (abs(key[0]), abs(key[1])):
                s.kappas[key] = min(KAPPA_MOVE_CAP, s.kappas[key] * f)
        return 1

    def randomly_freeze(self, s: WalkerState, z: float) -> int:
        st = self.settings
        n = len(s.masses)
        if n <= 2:
            return 0
        mu = 0.4 / max(1.0, z + 1.0)
        if self.rng.normal(mu, st.sigma_freeze) > n / self.n_total:
            return 0
        candidates = self.non_lsp(s)
        if len(candidates) < 2:
            return 0
        if self.rng.random() < st.prob_massive:
            pid = max(candidates, key=lambda p: s.masses[p])
        else:
            pid = self.choice(candidates)
        self.freeze(s, pid)
        return 1           # counted even when the ordering refuses, as in the original

    def randomly_change_masses(self, s: WalkerState, prob: float) -> int:
        if self.rng.random() < 1.0 - prob:
            return 0
        pid = self.choice(list(s.masses))
        lo, hi = self.bounds(s, pid)
        self.change_mass(s, pid, lo, hi)
        self.remove_all_offshell(s, rescale=True)
        return 1

    def change_mass(self, s: WalkerState, pid: int, lo: float, hi: float) -> None:
        """m' = m + U(−dx, dx), redrawn with dx × 1.2 while outside [lo, hi] or vetoed."""
        if not lo <= hi:
            return
        dx = self.settings.dx
        tries = 20 if self.settings.variant == "head" else self.settings.max_redraws
        for _ in range(tries):
            if dx > MAX_DX:
                return      # the whole interval is vetoed; the original would loop for ever
            mass = s.masses[pid] + float(self.rng.uniform(-dx, dx))
            dx *= 1.2
            if not lo <= mass <= hi:
                continue
            if pid == self.lsp and self.lsp_vetoed(s, mass):
                continue
            if pid != self.lsp and self.vetoed(s, pid, mass):
                continue
            s.masses[pid] = mass
            return

    def propose(self, s: WalkerState) -> int:
        """``randomlyChangeModel``: the sub-moves in sequence; the mass move is forced when
        nothing else changed. Returns the number of sub-moves that fired."""
        z = s.Z or 0.0
        changes = self.randomly_unfreeze(s, z)
        changes += self.randomly_change_branchings(s)
        changes += self.randomly_change_kappas(s)
        changes += self.randomly_freeze(s, z)
        changes += self.randomly_change_masses(s, 1.0 if changes == 0 else self.settings.prob_mass)
        return changes

    # -- deterministic transformations (§2.4) -------------------------------------------------------

    def prune(self, s: WalkerState) -> int:
        """Freeze (non-forced) every non-LSP particle absent from the best combination's elements."""
        if s.score is None or not s.score.contributing:
            return 0
        frozen = 0
        for pid in self.non_lsp(s):
            if pid in s.masses and pid not in s.score.contributing:
                frozen += self.freeze(s, pid)
        return frozen

    def simplified(self, s: WalkerState) -> WalkerState | None:
        """``simplifyModel``: a copy with every allowed merge applied, None if none was possible."""
        new = s.copy()
        merges = 0
        while self._merge_closest(new):
            merges += 1
        return new if merges else None

    def _merge_closest(self, s: WalkerState) -> bool:
        best, closest = None, self.settings.merge_dm
        for group in self.space.exchangeable:
            present = sorted(p for p in group if p in s.masses)
            for i, a in enumerate(present):
                for b in present[i + 1:]:
                    if abs(s.masses[a] - s.masses[b]) < closest:
                        best, closest = (a, b), abs(s.masses[a] - s.masses[b])
        if best is None:
            return False
        a, b = best
        if s.masses[a] > s.masses[b]:
            return False        # the original refuses merges against the PDG-id hierarchy
        mean = 0.5 * (s.masses[a] + s.masses[b])
        if self.vetoed(s, a, mean) or self._breaks_ordering(s, a, b, mean):
            return False
        self._merge(s, a, b, mean)
        return True

    def _breaks_ordering(self, s: WalkerState, a: int, b: int, mass: float) -> bool:
        masses = {p: m for p, m in s.masses.items() if p != b} | {a: mass}
        return any(light in masses and heavy in masses and masses[light] > masses[heavy]
                   for light, heavy in self.space.ordering)

    def _match_channel(self, parent: int, channel: tuple[int, ...]) -> tuple[int, ...] | None:
        """The parent's channel equal to `channel`, else the only one with the same BSM daughter
        and multiplicity (the original keyed two-body decays by the BSM daughter alone)."""
        decays = self.space.particles[parent].decays
        exact = [c for c in decays if sorted(c) == sorted(channel)]
        if exact:
            return exact[0]
        bsm = [d for d in channel if d in self.space.particles]
        same = [c for c in decays if len(c) == len(channel) and [d for d in c if d in self.space.particles] == bsm]
        return same[0] if len(same) == 1 else None

    def _merge(self, s: WalkerState, a: int, b: int, mass: float) -> None:
        """``merge``: a takes the mean mass and b's decays, decays into b go to a, κ merged so that
        the 13-TeV σ of a's productions is the sum of a's and b's before the merge; b is frozen."""
        old_xsec = self._class_xsecs(s.masses, s.kappas)
        s.masses[a] = mass
        for channel, br in s.decays.get(b, {}).items():
            target = self._match_channel(a, channel)
            if target is not None and self.channel_open(s, a, target):
                s.decays[a][target] = s.decays[a].get(target, 0.0) + br
        total = sum(s.decays[a].values())
        s.decays[a] = {ch: br / total for ch, br in s.decays[a].items()}
        for parent in self.non_lsp(s):
            if parent in (a, b):
                continue
            for channel in [c for c in s.decays[parent] if b in c]:
                br = s.decays[parent].pop(channel)
                target = self._match_channel(parent, tuple(a if d == b else d for d in channel))
                if target is not None:
                    s.decays[parent][target] = s.decays[parent].get(target, 0.0) + br
        unit = self._class_xsecs(s.masses, {})
        for key_b in [k for k in s.kappas if b in (abs(k[0]), abs(k[1]))]:
            swapped = tuple(sorted(int(math.copysign(a, p)) if abs(p) == b else p for p in key_b))
            key_a = self.space.kappa_key(swapped)
            if key_a in self.kappa_classes and unit.get(key_a, 0.0) > 0.0:
                s.kappas[key_a] = (old_xsec.get(key_a, 0.0) + old_xsec.get(key_b, 0.0)) / unit[key_a]
        self.freeze(s, b)

    def _class_xsecs(self, masses: dict[int, float], kappas: dict[Pair, float]) -> dict[Pair, float]:
        out: dict[Pair, float] = {}
        for pair, sigma in cross_sections(self.space, masses, kappas, 13).items():
            key = self.space.channel(pair).kappa_key
            out[key] = out.get(key, 0.0) + sigma
        return out


def acceptance_ratio(k_old: float | None, k_new: float) -> float:
    """min(1, exp((K_new − K_old)/2)); 1 for the start sentinel (K_old None or ≤ −20)."""
    if k_old is None or k_old <= START_K or k_new >= k_old:
        return 1.0
    return math.exp(0.5 * (k_new - k_old))


@dataclass
class Walker:
    """One walker: :meth:`walk` runs ``steps`` steps and keeps its trajectory and hiscores."""

    space: ProtomodelSpace
    objective: PaperObjective
    seed: int
    walker_id: int = 0
    settings: WalkerSettings = field(default_factory=WalkerSettings)
    hiscores: Hiscores = field(default_factory=Hiscores)
    on_step: Callable[[int, StepRecord], None] | None = None

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        self.manipulator = Manipulator(self.space, self.rng, self.settings)
        lsp_mass = float(self.rng.uniform(*self.settings.lsp_start))
        self.state = WalkerState(masses={self.space.lsp: lsp_mass}, decays={}, kappas={})
        self.n_steps = 0
        self.records: list[StepRecord] = []

    def walk(self, steps: int) -> list[StepRecord]:
        if not self.manipulator.non_lsp(self.state):
            self.manipulator.randomly_unfreeze(self.state, 0.0, force=True)
        for _ in range(steps):
            record = self.step()
            self.records.append(record)
            if self.on_step is not None:
                self.on_step(self.n_steps, record)
        return self.records

    def step(self) -> StepRecord:
        """One step of §2.2 (prune, propose, merge, score, absorb μ̂, hiscore, accept/reject)."""
        self.n_steps += 1
        m = self.manipulator
        backup = self.state.copy()
        proposal = self.state
        m.prune(proposal)
        m.propose(proposal)
        merged = m.simplified(proposal)
        candidates = [proposal] + ([merged] if merged is not None else [])
        scores = self.objective([c.to_protomodel(f"walker{self.walker_id}-step{self.n_steps}") for c in candidates])
        chosen, score = proposal, scores[0]
        if merged is not None and scores[1].K is not None and (score.K is None or scores[1].K > score.K):
            chosen, score = merged, scores[1]
        if score.K is None or score.Z is None:
            self.state = backup
            return self._record(None, False)
        chosen.score, chosen.K = score, score.K
        self._absorb_mu_hat(chosen, score)
        self.hiscores.add(chosen, walker=self.walker_id, step=self.n_steps)
        accepted = bool(self.rng.random() <= acceptance_ratio(backup.K, score.K))
        self.state = chosen if accepted else backup
        return self._record(score.K, accepted)

    def _absorb_mu_hat(self, s: WalkerState, score: PaperScore) -> None:
        """κ ← μ̂ κ, μ_max ← μ_max/μ̂, r_max ← μ̂ r_max (skipped for μ̂ = 0 or |μ̂ − 1| < 1e-5)."""
        mu = score.mu_hat
        s.mu_max, s.r_max = score.mu_max, score.r_max
        if mu == 0.0 or abs(mu - 1.0) < 1e-5:
            return
        s.kappas = {k: v * mu for k, v in s.kappas.items()}
        s.mu_max, s.r_max = score.mu_max / mu, score.r_max * mu

    def _record(self, k_proposed: float | None, accepted: bool) -> StepRecord:
        return StepRecord(K=self.state.K, K_proposed=k_proposed, accepted=accepted,
                          n_particles=len(self.state.masses), particles=tuple(sorted(self.state.masses)))
