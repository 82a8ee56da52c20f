"""Physical units of the SModelS text database, converted once on reading.

Canonical units: energies and masses in GeV, cross sections in fb, integrated luminosity in fb⁻¹.
A :class:`Quantity` carries its value in those units and its dimension as exponents of
(energy, cross section), so ``36.1/fb`` is ``Quantity(36.1, (0, -1))`` and ``1.3*pb`` is
``Quantity(1300.0, (0, 1))``.
"""

from __future__ import annotations

from dataclasses import dataclass

ENERGY = (1, 0)
XSEC = (0, 1)
INV_XSEC = (0, -1)
DIMENSIONLESS = (0, 0)

# name -> (factor to canonical units, dimension)
UNITS: dict[str, tuple[float, tuple[int, int]]] = {
    "eV": (1e-9, ENERGY),
    "keV": (1e-6, ENERGY),
    "MeV": (1e-3, ENERGY),
    "GeV": (1.0, ENERGY),
    "TeV": (1e3, ENERGY),
    "ab": (1e-3, XSEC),
    "fb": (1.0, XSEC),
    "pb": (1e3, XSEC),
    "nb": (1e6, XSEC),
}

DIMENSION_NAMES = {ENERGY: "energy (GeV)", XSEC: "cross section (fb)", INV_XSEC: "luminosity (1/fb)",
                   DIMENSIONLESS: "a pure number"}


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number in canonical units (GeV, fb, fb⁻¹) with its dimension (energy, xsec exponents)."""

    value: float
    dim: tuple[int, int]

    def __mul__(self, other: Quantity) -> Quantity:
        return Quantity(self.value * other.value, (self.dim[0] + other.dim[0], self.dim[1] + other.dim[1]))

    def __truediv__(self, other: Quantity) -> Quantity:
        return Quantity(self.value / other.value, (self.dim[0] - other.dim[0], self.dim[1] - other.dim[1]))

    def __neg__(self) -> Quantity:
        return Quantity(-self.value, self.dim)

    def describe_dim(self) -> str:
        return DIMENSION_NAMES.get(self.dim, f"units GeV^{self.dim[0]} fb^{self.dim[1]}")


def unit(name: str) -> Quantity:
    """The quantity 1 `name`; raises KeyError for unknown units."""
    factor, dim = UNITS[name]
    return Quantity(factor, dim)
