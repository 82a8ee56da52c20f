"""Package discovery for the three-folder layout (DESIGN §2): models/ and diagnostics/ install as
tdmcmc.models and tdmcmc.diagnostics, so nothing generic lands at the top of site-packages.
setuptools' `packages.find` cannot rename folders, hence this small walk."""

from pathlib import Path

from setuptools import setup

ROOTS = {"tdmcmc": "tdmcmc", "tdmcmc.models": "models", "tdmcmc.diagnostics": "diagnostics"}


def _packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder).parts
            found.append(".".join((name, *rel)))
    return found


setup(packages=_packages(), package_dir=ROOTS)
