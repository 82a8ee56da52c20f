"""The protomodel space as data: read and validate a space TOML file into a typed :class:`ProtomodelSpace`.

A space lists candidate particles (PDG id, name, charge conjugation, mass bounds in GeV, allowed
decays), ordering pairs, mass vetoes and production channels (signed PDG pairs with a fitted
cross-section process and a factor). The default, ``space.toml`` next to this module, is the
20-particle space of arXiv:2012.12246. Charge-conjugate production channels share one
signal-strength multiplier κ; its key is the sorted signed pair with the more positive member
(e.g. ``(1000023, 1000024)`` for both N2 C1+ and N2 C1-).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from tdmcmc.errors import UserError

DEFAULT_SPACE = Path(__file__).with_name("space.toml")
COEFFICIENTS = Path(__file__).with_name("xsec_coefficients.json")

Pair = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Particle:
    """A candidate BSM particle. Masses in GeV; decays are tuples of unsigned daughter PDG ids."""

    pdg: int
    name: str
    self_conjugate: bool
    mass_min: float
    mass_max: float
    decays: tuple[tuple[int, ...], ...]
    decay_groups: tuple[tuple[tuple[int, ...], ...], ...]


@dataclass(frozen=True, slots=True)
class ProductionChannel:
    """One signed production pair: σ = factor × process(masses), in fb; κ shared via ``kappa_key``."""

    pair: Pair
    process: str
    factor: float
    kappa_key: Pair

    @property
    def key(self) -> Pair:
        """The sorted signed pair, as in SModelS/protomodels ``ssmultipliers`` keys."""
        return tuple(sorted(self.pair))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class MassVeto:
    """Forbidden region: m < max_mass and min_gap < m - m(LSP) < max_gap for a listed particle (GeV)."""

    name: str
    particles: tuple[int, ...]
    max_mass: float
    min_gap: float
    max_gap: float


@dataclass(frozen=True)
class ProtomodelSpace:
    """A validated protomodel space (see the module docstring for conventions)."""

    name: str
    description: str
    source: str
    lsp: int
    particles: dict[int, Particle]
    sm_masses: dict[int, float]
    ordering: tuple[Pair, ...]
    vetoes: tuple[MassVeto, ...]
    productions: tuple[ProductionChannel, ...]
    exchangeable: tuple[tuple[int, ...], ...] = ()

    def conjugate(self, pdg: int) -> int:
        """PDG id of the antiparticle (the same id for self-conjugate particles and SM ids)."""
        particle = self.particles.get(abs(pdg))
        if particle is not None and particle.self_conjugate:
            return abs(pdg)
        return -pdg

    def kappa_key(self, pair: Pair) -> Pair:
        """The κ key shared by ``pair`` and its charge conjugate."""
        a, b = sorted(pair)
        ca, cb = sorted((self.conjugate(a), self.conjugate(b)))
        return max((a, b), (ca, cb))

    def channel(self, pair: Pair) -> ProductionChannel:
        """The production channel of a signed pair (either order)."""
        key = tuple(sorted(pair))
        for channel in self.productions:
            if channel.key == key:
                return channel
        raise KeyError(f"no production channel {key} in space {self.name!r}")

    def kappa_classes(self) -> dict[Pair, tuple[ProductionChannel, ...]]:
        """Production channels grouped by their shared κ key."""
        classes: dict[Pair, list[ProductionChannel]] = {}
        for channel in self.productions:
            classes.setdefault(channel.kappa_key, []).append(channel)
        return {key: tuple(channels) for key, channels in classes.items()}


def load_space(path: str | Path | None = None) -> ProtomodelSpace:
    """Read and validate a space TOML file (default: the paper's 20-particle space).

    Raises :class:`UserError` naming the file, the table/key and the offending value.
    """
    path = Path(path) if path is not None else DEFAULT_SPACE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read protomodel space file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    return _Validator(str(path), _known_processes()).space(data)


@cache
def default_space() -> ProtomodelSpace:
    """The packaged default space (cached)."""
    return load_space(DEFAULT_SPACE)


@cache
def _known_processes() -> frozenset[str]:
    with COEFFICIENTS.open(encoding="utf-8") as stream:
        return frozenset(json.load(stream)["processes"])


class _Validator:
    """Turns the raw TOML dict into a ProtomodelSpace; every error names file, key and value."""

    def __init__(self, source: str, processes: frozenset[str]):
        self.source = source
        self.processes = processes

    def fail(self, where: str, message: str) -> UserError:
        return UserError(f"{self.source}: {where}: {message}")

    def get(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
            default: Any = ...) -> Any:
        if key not in table:
            if default is ...:
                raise self.fail(where, f"missing key '{key}'")
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(f"{where}.{key}", f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(f"{where}.{key}", f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def space(self, data: dict[str, Any]) -> ProtomodelSpace:
        name = self.get(data, "name", str, "top level")
        sm_masses = self.sm_masses(self.get(data, "sm_masses", dict, "top level"))
        particles = self.particles(self.get(data, "particle", list, "top level"))
        for particle in particles.values():
            self.check_decays(particle, particles, sm_masses)
        lsp = self.get(data, "lsp", int, "top level")
        if lsp not in particles:
            raise self.fail("lsp", f"{lsp} is not a particle of this space")
        if particles[lsp].decays:
            raise self.fail(f"particle {lsp}.decays", "the LSP must be stable (decays = [])")
        ordering = self.ordering(self.get(data, "ordering", list, "top level", []), particles)
        vetoes = tuple(self.veto(i, v, particles)
                       for i, v in enumerate(self.get(data, "mass_veto", list, "top level", [])))
        exchangeable = self.exchangeable(self.get(data, "exchangeable", list, "top level", []), particles, lsp)
        space = ProtomodelSpace(
            name=name, description=self.get(data, "description", str, "top level", ""),
            source=self.source, lsp=lsp, particles=particles, sm_masses=sm_masses,
            ordering=ordering, vetoes=vetoes, productions=(), exchangeable=exchangeable)
        productions = self.productions(self.get(data, "production", list, "top level"), space)
        return replace(space, productions=productions)

    def sm_masses(self, table: dict[str, Any]) -> dict[int, float]:
        masses = {}
        for key, value in table.items():
            if not key.isdigit() or int(key) >= 1000000:
                raise self.fail(f"sm_masses.{key}", "keys must be positive SM PDG ids below 1000000")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise self.fail(f"sm_masses.{key}", f"mass must be a number >= 0 GeV, got {value!r}")
            masses[int(key)] = float(value)
        return masses

    def particles(self, entries: list[Any]) -> dict[int, Particle]:
        particles: dict[int, Particle] = {}
        names: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"particle[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, f"expected a table, got {entry!r}")
            pdg = self.get(entry, "pdg", int, where)
            where = f"particle[{i}] (pdg {pdg})"
            if pdg < 1000000:
                raise self.fail(f"{where}.pdg", f"BSM particles need a positive id >= 1000000, got {pdg}")
            if pdg in particles:
                raise self.fail(f"{where}.pdg", f"duplicate PDG id {pdg}")
            name = self.get(entry, "name", str, where)
            if name in names:
                raise self.fail(f"{where}.name", f"duplicate name {name!r}")
            names.add(name)
            bounds = self.get(entry, "mass", list, where)
            if len(bounds) != 2 or not all(_is_number(b) for b in bounds):
                raise self.fail(f"{where}.mass", f"expected [lower, upper] in GeV, got {bounds!r}")
            lower, upper = (float(b) for b in bounds)
            if not 0 < lower <= upper:
                raise self.fail(f"{where}.mass", f"need 0 < lower <= upper, got {bounds!r}")
            decays = tuple(self.daughters(d, f"{where}.decays[{j}]")
                           for j, d in enumerate(self.get(entry, "decays", list, where)))
            if len(set(decays)) != len(decays):
                dup = next(d for d in decays if decays.count(d) > 1)
                raise self.fail(f"{where}.decays", f"duplicate decay channel {list(dup)}")
            groups = tuple(
                tuple(self.daughters(d, f"{where}.decay_groups[{j}]") for d in group)
                for j, group in enumerate(self.get(entry, "decay_groups", list, where, [])))
            for j, group in enumerate(groups):
                missing = [list(d) for d in group if d not in decays]
                if missing:
                    raise self.fail(f"{where}.decay_groups[{j}]", f"channels {missing} are not in decays")
            particles[pdg] = Particle(
                pdg=pdg, name=name,
                self_conjugate=self.get(entry, "self_conjugate", bool, where),
                mass_min=lower, mass_max=upper, decays=decays, decay_groups=groups)
        if not particles:
            raise self.fail("particle", "the space has no particles")
        return particles

    def daughters(self, value: Any, where: str) -> tuple[int, ...]:
        if (not isinstance(value, list) or len(value) < 2
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)):
            raise self.fail(where, f"expected a list of >= 2 unsigned PDG ids, got {value!r}")
        return tuple(value)

    def check_decays(self, particle: Particle, particles: dict[int, Particle],
                     sm_masses: dict[int, float]) -> None:
        for j, daughters in enumerate(particle.decays):
            where = f"particle {particle.pdg} ({particle.name}).decays[{j}]"
            for d in daughters:
                if d == particle.pdg:
                    raise self.fail(where, f"particle decays into itself: {list(daughters)}")
                if d not in particles and d not in sm_masses:
                    raise self.fail(where, f"unknown daughter {d} (neither a particle nor in sm_masses)")
            if not any(d in particles for d in daughters):
                raise self.fail(where, f"no BSM daughter in {list(daughters)} (R-parity-like chains)")

    def ordering(self, entries: list[Any], particles: dict[int, Particle]) -> tuple[Pair, ...]:
        pairs = []
        for i, entry in enumerate(entries):
            where = f"ordering[{i}]"
            if (not isinstance(entry, list) or len(entry) != 2
                    or not all(isinstance(p, int) and not isinstance(p, bool) for p in entry)):
                raise self.fail(where, f"expected [lighter, heavier] PDG ids, got {entry!r}")
            for p in entry:
                if p not in particles:
                    raise self.fail(where, f"unknown particle {p}")
            if entry[0] == entry[1]:
                raise self.fail(where, f"a particle cannot be ordered against itself: {entry!r}")
            pairs.append((entry[0], entry[1]))
        return tuple(pairs)

    def exchangeable(self, entries: list[Any], particles: dict[int, Particle], lsp: int) -> tuple[tuple[int, ...], ...]:
        groups, seen = [], set()
        for i, entry in enumerate(entries):
            where = f"exchangeable[{i}]"
            if (not isinstance(entry, list) or len(entry) < 2
                    or not all(isinstance(p, int) and not isinstance(p, bool) for p in entry)):
                raise self.fail(where, f"expected a list of two or more PDG ids, got {entry!r}")
            for p in entry:
                if p not in particles or p == lsp:
                    raise self.fail(where, f"{p} is not a non-LSP particle of this space")
                if p in seen:
                    raise self.fail(where, f"{p} is already in another exchangeable group")
                seen.add(p)
            groups.append(tuple(entry))
        return tuple(groups)

    def veto(self, i: int, entry: Any, particles: dict[int, Particle]) -> MassVeto:
        where = f"mass_veto[{i}]"
        if not isinstance(entry, dict):
            raise self.fail(where, f"expected a table, got {entry!r}")
        pids = self.get(entry, "particles", list, where)
        for p in pids:
            if p not in particles:
                raise self.fail(f"{where}.particles", f"unknown particle {p!r}")
        numbers = {}
        for key in ("max_mass", "min_gap", "max_gap"):
            value = self.get(entry, key, (int, float), where)
            numbers[key] = float(value)
        if numbers["min_gap"] > numbers["max_gap"]:
            raise self.fail(where, f"min_gap {numbers['min_gap']} > max_gap {numbers['max_gap']}")
        return MassVeto(name=self.get(entry, "name", str, where, f"veto {i}"),
                        particles=tuple(pids), **numbers)

    def productions(self, entries: list[Any], space: ProtomodelSpace) -> tuple[ProductionChannel, ...]:
        channels: dict[Pair, ProductionChannel] = {}
        for i, entry in enumerate(entries):
            where = f"production[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, f"expected a table, got {entry!r}")
            pair = self.get(entry, "pair", list, where)
            where = f"production[{i}] (pair {pair})"
            if len(pair) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in pair):
                raise self.fail(f"{where}.pair", f"expected two signed PDG ids, got {pair!r}")
            for p in pair:
                particle = space.particles.get(abs(p))
                if particle is None:
                    raise self.fail(f"{where}.pair", f"unknown particle {p}")
                if p < 0 and particle.self_conjugate:
                    raise self.fail(f"{where}.pair", f"{p}: {particle.name} is self-conjugate, use {abs(p)}")
            process = self.get(entry, "process", str, where)
            if process not in self.processes:
                raise self.fail(f"{where}.process",
                                f"unknown cross-section process {process!r} "
                                f"(known: {', '.join(sorted(self.processes))})")
            factor = float(self.get(entry, "factor", (int, float), where, 1.0))
            if not factor > 0:
                raise self.fail(f"{where}.factor", f"must be > 0, got {factor}")
            channel = ProductionChannel(pair=(pair[0], pair[1]), process=process, factor=factor,
                                        kappa_key=space.kappa_key((pair[0], pair[1])))
            if channel.key in channels:
                raise self.fail(f"{where}.pair", f"duplicate production channel {list(channel.key)}")
            channels[channel.key] = channel
        for key, channel in channels.items():
            conjugate = tuple(sorted(space.conjugate(p) for p in key))
            if conjugate not in channels:
                raise self.fail(f"production (pair {list(channel.pair)})",
                                f"its charge conjugate {list(conjugate)} is not listed")
        return tuple(channels.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "an array", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
