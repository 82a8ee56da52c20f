"""The protomodel space file: the paper's 20-particle content and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdmcmc.errors import UserError
from tdmcmc.models.protomodel.space import DEFAULT_SPACE, default_space, load_space

# method reference §1.1: PDG id -> has an antiparticle
PAPER_PARTICLES = {
    1000001: True, 1000002: True, 1000003: True, 1000004: True, 1000005: True, 2000005: True,
    1000006: True, 2000006: True, 1000011: True, 1000012: False, 1000013: True, 1000014: False,
    1000015: True, 1000016: False, 1000021: False, 1000022: False, 1000023: False, 1000025: False,
    1000024: True, 1000037: True,
}


def test_default_space_has_the_papers_particles():
    space = default_space()
    assert {p: not q.self_conjugate for p, q in space.particles.items()} == PAPER_PARTICLES
    assert space.lsp == 1000022 and space.particles[1000022].decays == ()
    assert all(p.mass_max == 2400.0 for p in space.particles.values())
    walled = {p for p, q in space.particles.items() if q.mass_min == 310.0}
    assert walled == {1000001, 1000002, 1000003, 1000004, 1000021}
    assert space.particles[1000024].mass_min == 100.0 and space.particles[1000023].mass_min == 20.0


def test_decays_follow_the_template():
    space = default_space()
    gluino = space.particles[1000021].decays
    assert len(gluino) == 29  # 18 three-body (kept, unlike the [HEAD] SLHA writer) + 3 N g + 8 squark q
    assert sum(len(d) == 3 for d in gluino) == 18
    assert (1000022, 6, 6) in gluino and (1000024, 5, 6) in gluino
    assert space.particles[1000005].decays.count((1000021, 5)) == 1  # listed twice in the template
    assert (1000006, 23) in space.particles[2000006].decays
    assert (1000006, 23) not in space.particles[1000006].decays
    assert space.particles[1000023].decay_groups == (((1000022, 11, 11), (1000022, 13, 13), (1000022, 15, 15)),)
    assert space.sm_masses[6] == 173.0 and space.sm_masses[24] == 81.0


def test_ordering_and_vetoes():
    space = default_space()
    assert (1000006, 2000006) in space.ordering and (1000024, 1000037) in space.ordering
    assert len(space.ordering) == 6
    (veto,) = space.vetoes
    assert veto.particles == (1000006, 2000006) and (veto.max_mass, veto.min_gap, veto.max_gap) == (280, 150, 200)


def test_kappa_is_shared_by_charge_conjugates():
    space = default_space()
    assert space.kappa_key((-1000024, 1000023)) == (1000023, 1000024)
    assert space.kappa_key((1000023, 1000024)) == (1000023, 1000024)
    assert space.kappa_key((1000021, -1000001)) == (1000001, 1000021)
    assert space.kappa_key((-1000006, 1000006)) == (-1000006, 1000006)
    classes = space.kappa_classes()
    assert {c.pair for c in classes[1000023, 1000024]} == {(1000023, 1000024), (-1000024, 1000023)}
    assert len(space.productions) == 26 and len(classes) == 20
    assert space.channel((1000001, -1000001)).factor == pytest.approx(0.1)
    # no neutralino pairs (the original reused the chargino table for them) and no LSP pair
    assert not any(abs(a) in (1000022, 1000023, 1000025) and abs(b) in (1000022, 1000023, 1000025)
                   for a, b in (c.pair for c in space.productions))


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_SPACE.read_text()
    assert old in text, old
    path = tmp_path / "space.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("pair = [-1000015, 1000015]", "pair = [-1000017, 1000017]", ["production[", "unknown particle -1000017"]),
    ("mass = [310.0, 2400.0]", "mass = [2500.0, 2400.0]", ["particle[", ".mass", "2500.0"]),
    ("pdg = 1000025", "pdg = 1000023", ["duplicate PDG id 1000023"]),
    ("[1000022, 23], [1000022, 25], [1000024, 24],", "[1000022, 23], [1000022, 99], [1000024, 24],",
     ["decays[1]", "unknown daughter 99"]),
    ("pair = [-1000001, 1000021]", "pair = [-1000001, 1000022]", ["charge conjugate [-1000001, 1000021]"]),
    ("pair = [1000021, 1000021]", "pair = [-1000021, 1000021]", ["-1000021", "self-conjugate"]),
    ('process = "gluino_pair"', 'process = "gluino_pairs"', [".process", "'gluino_pairs'"]),
    ("lsp = 1000022", "lsp = 1000023", ["LSP must be stable"]),
    ("[1000001, 1000003],\n]", "[1000001, 1000001],\n]", ["ordering[5]", "itself"]),
    ('name = "Xb2"', 'name = "Xb"', ["duplicate name 'Xb'"]),
    ("factor = 0.1", "factor = -0.1", [".factor", "-0.1"]),
    ("self_conjugate = true", 'self_conjugate = "yes"', ["self_conjugate", "true/false", "'yes'"]),
])
def test_bad_space_files_name_file_key_and_value(tmp_path, old, new, expected):
    path = _variant(tmp_path, old, new)
    with pytest.raises(UserError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_space(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[[particle]\n")
    with pytest.raises(UserError, match=r"bad\.toml: invalid TOML.*line 2"):
        load_space(bad)


def test_user_space_subset(tmp_path):
    """A user's own, smaller space: gluino + LSP only."""
    path = tmp_path / "mini.toml"
    path.write_text("""
name = "mini"
lsp = 1000022
[sm_masses]
"1" = 0.0
[[particle]]
pdg = 1000022
name = "N1"
self_conjugate = true
mass = [1.0, 3000.0]
decays = []
[[particle]]
pdg = 1000021
name = "go"
self_conjugate = true
mass = [500.0, 3000.0]
decays = [[1000022, 1, 1]]
[[production]]
pair = [1000021, 1000021]
process = "gluino_pair"
""")
    space = load_space(path)
    assert list(space.particles) == [1000022, 1000021] and space.ordering == ()
    assert space.channel((1000021, 1000021)).kappa_key == (1000021, 1000021)
