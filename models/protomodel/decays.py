"""Decay chains of the space's decay graph, with charges assigned to every particle.

The space lists decays of positive PDG ids into *unsigned* daughters. Here every (signed) parent
gets its signed decays: the signs of the daughters are fixed by conservation of electric charge
and baryon number. When several sign assignments conserve both (a self-conjugate parent decaying
into a charged pair: g̃ → t̃ t̄ / t̃* t, N2 → C1± W∓, ν̃ → C1± ℓ∓), each gets half of the channel's
BR, as for a CP-conserving decay. A *chain* is the sequence of decays from a produced particle
down to a stable one (the LSP); every decay of the space has exactly one BSM daughter, so a chain
is linear. Chains never visit a particle twice (the space allows N2 → C1 W and C1 → N2 W; at most
one of them is open for given masses).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import product

from tdmcmc.errors import UserError

from .space import ProtomodelSpace

# Charges (in units of e/3) and baryon numbers (×3) of the SM states, by positive PDG id.
_SM_CHARGE3 = {1: -1, 2: 2, 3: -1, 4: 2, 5: -1, 6: 2, 11: -3, 12: 0, 13: -3, 14: 0, 15: -3, 16: 0,
               21: 0, 22: 0, 23: 0, 24: 3, 25: 0}
_SM_BARYON3 = {q: 1 for q in range(1, 7)}
_SELF_CONJUGATE_SM = {12, 14, 16, 21, 22, 23, 25}

# Names of the elementary SM states, as in tdmcmc.models.database.constraints.SM_STATES.
_SM_STATE = {1: "d", 2: "u", 3: "s", 4: "c", 5: "b", 6: "t+", -6: "t-", 11: "e-", -11: "e+",
             13: "mu-", -13: "mu+", 15: "ta-", -15: "ta+", 12: "nue", 14: "numu", 16: "nuta",
             21: "g", 22: "photon", 23: "Z", 24: "W+", -24: "W-", 25: "higgs"}
INVISIBLE_SM = frozenset({12, 14, 16})
# Particles whose three-body channels are open only while none of their two-body channels is (the
# [HEAD] off-shell rule for N2 and C1: N2 -> N1 f f and C1 -> N1 f f' stand for an off-shell Z / W).
OFFSHELL_THREE_BODY = frozenset({1000023, 1000024})

Unit = tuple[tuple[int, ...], ...]


def decay_units(particle) -> tuple[Unit, ...]:
    """Decay 'units' of a space particle: its decay groups (channels sharing one BR, split evenly)
    first, then its other channels one by one, in the order of the space file."""
    grouped = {ch for g in particle.decay_groups for ch in g}
    return tuple(particle.decay_groups) + tuple((ch,) for ch in particle.decays if ch not in grouped)


def sm_state(pdg: int) -> str:
    """The database's elementary state name of a signed SM PDG id (quarks: no charge label)."""
    name = _SM_STATE.get(pdg, _SM_STATE.get(abs(pdg)))
    if name is None:
        raise UserError(f"SM particle {pdg} has no label in the SModelS database conventions")
    return name


def bsm_charge3(pdg: int) -> int:
    """3 × electric charge of a BSM particle, from the SUSY numbering of its PDG id (sfermions carry
    the charge of their partner, χ̃±: 1000024/1000037, other gauginos neutral)."""
    sign = 1 if pdg > 0 else -1
    base = abs(pdg) % 1000000
    if base in (24, 37):
        return 3 * sign
    if base in _SM_CHARGE3 and base <= 16:
        return sign * _SM_CHARGE3[base]
    if base in (21, 22, 23, 25, 35, 39):
        return 0
    raise UserError(f"cannot tell the charge of BSM particle {pdg} from its PDG id")


def bsm_baryon3(pdg: int) -> int:
    base = abs(pdg) % 1000000
    return (1 if pdg > 0 else -1) if 1 <= base <= 6 else 0


@dataclass(frozen=True, slots=True)
class Decay:
    """One signed decay ``mother -> bsm + sm``: ``channel`` is the space's (unsigned) channel of
    ``abs(mother)``, ``share`` the fraction of its BR that goes into this sign assignment."""

    mother: int
    bsm: int
    sm: tuple[int, ...]
    channel: tuple[int, ...]
    share: float


Chain = tuple[Decay, ...]


class DecayGraph:
    """Signed decays and chains of a space (built once; cached per space)."""

    def __init__(self, space: ProtomodelSpace):
        self.space = space
        self._decays: dict[int, tuple[Decay, ...]] = {}
        self._chains: dict[int, tuple[Chain, ...]] = {}

    def signed(self, pdg: int) -> tuple[int, ...]:
        """The particle and its antiparticle (one id if self-conjugate)."""
        conj = self.space.conjugate(pdg)
        return (pdg,) if conj == pdg else (pdg, conj)

    def decays(self, mother: int) -> tuple[Decay, ...]:
        """Signed decays of a signed BSM particle."""
        if mother not in self._decays:
            self._decays[mother] = tuple(d for ch in self.space.particles[abs(mother)].decays
                                         for d in self._assign(mother, ch))
        return self._decays[mother]

    def _assign(self, mother: int, channel: tuple[int, ...]) -> list[Decay]:
        space = self.space
        options = []
        for d in channel:
            if d in space.particles:
                options.append(self.signed(d))
            elif d in _SELF_CONJUGATE_SM:
                options.append((d,))
            else:
                options.append((d, -d))
        charge, baryon = bsm_charge3(mother), bsm_baryon3(mother)
        found: dict[tuple, tuple[int, tuple[int, ...]]] = {}
        for signs in product(*options):
            q = sum(bsm_charge3(p) if abs(p) in space.particles else _sign(p) * _SM_CHARGE3[abs(p)]
                    for p in signs)
            b = sum(bsm_baryon3(p) if abs(p) in space.particles else _sign(p) * _SM_BARYON3.get(abs(p), 0)
                    for p in signs)
            if q != charge or b != baryon:
                continue
            bsm = next(p for p in signs if abs(p) in space.particles)
            sm = tuple(sorted(p for p in signs if abs(p) not in space.particles))
            found[(bsm, sm)] = (bsm, sm)
        if not found:
            raise UserError(f"{space.source}: decay {abs(mother)} -> {list(channel)} conserves neither "
                            f"charge nor baryon number for {mother}")
        share = float(Fraction(1, len(found)))
        return [Decay(mother, bsm, sm, channel, share) for bsm, sm in found.values()]

    def chains(self, pdg: int) -> tuple[Chain, ...]:
        """Every chain from a signed particle down to a stable particle, without repeated particles."""
        if pdg not in self._chains:
            self._chains[pdg] = tuple(self._walk(pdg, frozenset()))
        return self._chains[pdg]

    def _walk(self, pdg: int, seen: frozenset[int]) -> list[Chain]:
        decays = self.decays(pdg)
        if not decays:
            return [()]
        out = []
        for decay in decays:
            if abs(decay.bsm) in seen or abs(decay.bsm) == abs(pdg):
                continue
            for rest in self._walk(decay.bsm, seen | {abs(pdg)}):
                out.append((decay, *rest))
        return out


def _sign(pdg: int) -> int:
    return 1 if pdg > 0 else -1
