"""Shared fixtures. Real data comes from ../shared (or $TDMCMC_SHARED); it is never copied here.

Locally, real-data tests skip when the folder is absent. With TDMCMC_REQUIRE_DATA=1 (set by .ci/run)
they fail instead, so CI cannot go green without running them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("TDMCMC_SHARED", REPO.parent / "shared")).resolve()


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"real data not found: {path} (set TDMCMC_SHARED to the folder holding data/)"
    if os.environ.get("TDMCMC_REQUIRE_DATA") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared() -> Path:
    return _require(shared_dir())


@pytest.fixture(scope="session")
def db124() -> Path:
    """The SModelS 1.2.4 database used by the paper (filtered)."""
    return _require(shared_dir() / "data" / "smodels-db")


@pytest.fixture(scope="session")
def db300extra() -> Path:
    """Release 3.0.0 additions (v3 graph syntax, covariances, thirdMoment)."""
    return _require(shared_dir() / "data" / "smodels-db-300-extra")


@pytest.fixture(scope="session")
def oracle() -> Path:
    """SModelS 3.2.1 outputs for five protomodels."""
    return _require(shared_dir() / "oracle-reference")


ORACLE_MODELS = ("best_paper", "ewkino400_lsp100", "gluino1500_lsp300", "sqd900_lsp100", "stop800_lsp200")


@pytest.fixture(scope="session")
def oracle_models(oracle: Path) -> dict[str, tuple[dict, dict]]:
    """name -> (model dict with the oracle's cross sections injected as `xsecs`, SModelS output)."""
    import json

    out = {}
    for name in ORACLE_MODELS:
        data = json.loads((oracle / "models" / f"{name}.json").read_text())
        ref = json.loads((oracle / "out" / f"{name}.json").read_text())
        out[name] = ({**data, "xsecs": ref["xsecs"]}, ref)
    return out


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or warm the user's cache (~/.cache/tdmcmc): one fresh cache per session."""
    old = os.environ.get("TDMCMC_CACHE_DIR")
    os.environ["TDMCMC_CACHE_DIR"] = str(tmp_path_factory.mktemp("tdmcmc-cache"))
    yield
    if old is None:
        os.environ.pop("TDMCMC_CACHE_DIR", None)
    else:
        os.environ["TDMCMC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def db124_compiled(db124: Path):
    """The 1.2.4 database, read once per session (a cold read takes a few seconds)."""
    from tdmcmc.models.database.compiled import load_compiled

    return load_compiled(db124)


@pytest.fixture(scope="session")
def db300_compiled(db300extra: Path):
    from tdmcmc.models.database.compiled import load_compiled

    return load_compiled(db300extra)


@pytest.fixture(scope="session")
def oracle_space(oracle_models):
    """The paper's space restricted to the oracle models' particles (N1, N2, C1, g, d, t1): small
    topology tables, so tests of the likelihood graph build quickly."""
    from tdmcmc.models.protomodel.space import default_space
    from tdmcmc.models.protomodel.topologies import restrict_space

    particles = {int(p) for data, _ in oracle_models.values() for p in data["masses"]}
    return restrict_space(default_space(), sorted(particles))


@pytest.fixture(scope="session")
def oracle_space_target(db124, shared, db124_compiled, oracle_space):
    """The paper-setting LikelihoodTarget on 1.2.4 over :func:`oracle_space`, shared by the test
    modules (each compiled graph is built once per session)."""
    from tdmcmc.models.protomodel.target import LikelihoodTarget

    return LikelihoodTarget(db124, shared / "data" / "raw" / "protomodels" / "combination-matrix",
                            space=oracle_space, compiled=db124_compiled)
