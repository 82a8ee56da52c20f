"""Make ``smodels_interpolation.json``: values SModelS 3.2.1 interpolates on a few real maps.

Run with a Python that has SModelS 3.2.1 installed (not the tdmcmc venv), once per numerical
environment that ``interpolation.ARITHMETICS`` reproduces::

    # py312-numpy2.5: Python 3.12.1, numpy 2.5.5, scipy 1.18.1
    /tmp/smodels-venv/bin/python tests/models/data/make_smodels_interpolation_fixture.py \\
        --shared /work/shared --out tests/models/data/smodels_interpolation.json
    # py311-numpy2.4 (the oracle's): Python 3.11.7, then ``pip install smodels==3.2.1`` (numpy 2.4.6,
    # scipy 1.17.1)
    /tmp/smodels-venv311/bin/python tests/models/data/make_smodels_interpolation_fixture.py \\
        --shared /work/shared --out tests/models/data/smodels_interpolation_py311.json

SModelS writes a pickle into the database folder it loads, so the selected analysis folders (only
the selected txname files, and the ``version`` file) are copied to a temporary directory first.
For every selected map the script draws points (fixed seed) in SModelS' flat coordinates (masses
in GeV in SModelS' order, then rescaled widths): data points, convex combinations of 2-3 data
points (inside the hull), data points moved by N(0, 30 GeV) in every mass (off the plane of
symmetric maps, often outside), points pushed 30 % away from the centroid (mostly outside). Each
point is rounded to 0.01 as ``roundCache`` does inside ``getValueFor`` (so SModelS' rounding is a
no-op) and evaluated with ``txname.txnameData.getValueFor`` (or ``txnameDataExp`` for expected
limits). The JSON stores every point in the column order of tdmcmc's ``MapData.layout`` (v1/v2:
per branch entry the mass, then its width; widths un-rescaled to GeV) with SModelS' value (null =
None), and the bits SModelS' triangulation is built from: ``delta_x`` and the rotated data points
(``tri.points``, maps of dimensionality > 1) as float.hex strings, in the map file's point order.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy
from smodels import installation
from smodels.experiment.databaseObj import Database
from smodels.experiment.expAuxiliaryFuncs import concatenateLines, unscaleWidth

# (database, analysis folder, txname, kind, max datasets): a 1-D UL line (2 masses), a 2-D UL
# map with expected limits, T6WW (3 masses in two planes), a 1-D efficiency map over 4 SRs, an
# asymmetric-branch 3.x efficiency map (TChiQ, masses [[m1, m2], [m2]]) and a 3.x map with widths.
SELECTION = [
    ("smodels-db", "8TeV/CMS/CMS-EXO-12-026", "THSCPM1b", "observed", 1),
    ("smodels-db", "13TeV/ATLAS/ATLAS-SUSY-2018-06", "TChiWZ", "observed", 1),
    ("smodels-db", "13TeV/ATLAS/ATLAS-SUSY-2018-06", "TChiWZ", "expected", 1),
    ("smodels-db", "8TeV/ATLAS/ATLAS-CONF-2013-089", "T6WW", "observed", 1),
    ("smodels-db", "8TeV/CMS/CMS-EXO-13-006-eff", "THSCPM1b", "efficiency", 4),
    ("smodels-db-300-extra", "13TeV/ATLAS/ATLAS-SUSY-2018-22-eff", "TChiQ", "efficiency", 3),
    ("smodels-db-300-extra", "13TeV/ATLAS/ATLAS-SUSY-2016-06-eff", "TDTM2F", "efficiency", 1),
]
N_EACH = 60
SEED = 20261122


def copy_database(shared: Path, db: str, selection: list[tuple], dest: Path) -> Path:
    """Copy the selected folders, keeping only the selected txnames (others may name particles
    that SModelS' default model lacks)."""
    root = dest / db
    keep = {"globalInfo.txt", "dataInfo.txt"}
    for folder in sorted({s[1] for s in selection}):
        names = keep | {s[2] + ".txt" for s in selection if s[1] == folder}
        shutil.copytree(shared / "data" / db / folder, root / folder,
                        ignore=lambda d, files: [f for f in files if f.endswith(".txt") and f not in names])
    shutil.copy(shared / "data" / db / "version", root / "version")
    return root


def layout_order(txname) -> list[int]:
    """SModelS flat index of each tdmcmc layout column (v1/v2: sorted by (branch, position, k))."""
    if txname._arrayMap is None:
        return sorted(txname.dataMap)
    return sorted(txname._arrayMap, key=lambda a: txname._arrayMap[a][0])


def draw_points(x: np.ndarray, is_width: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    grid = x[rng.choice(n, min(N_EACH, n), replace=False)]
    combos = []
    for _ in range(2 * N_EACH):
        idx = rng.choice(n, rng.integers(2, 4), replace=True)
        w = rng.dirichlet(np.ones(len(idx)))
        combos.append(w @ x[idx])
    moved = x[rng.choice(n, N_EACH)] + rng.normal(0.0, 30.0, (N_EACH, x.shape[1])) * ~is_width
    moved += rng.normal(0.0, 2.0, moved.shape) * is_width
    centre = x.mean(axis=0)
    pushed = centre + 1.3 * (x[rng.choice(n, N_EACH)] - centre)
    pts = np.concatenate([grid, np.array(combos), moved, pushed])
    pts[:, ~is_width] = np.maximum(pts[:, ~is_width], 0.0)
    pts[:, is_width] = np.maximum(pts[:, is_width], 0.0)
    return np.round(pts, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path("/work/shared"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("smodels_interpolation.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    out = {"smodels_version": installation.version(), "python": platform.python_version(),
           "numpy": np.__version__, "scipy": scipy.__version__, "seed": SEED, "maps": []}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {}
        for db in sorted({s[0] for s in SELECTION}):
            chosen = [s for s in SELECTION if s[0] == db]
            dbs[db] = Database(str(copy_database(args.shared, db, chosen, Path(tmp))), force_load="txt")
        for db, folder, txname_name, kind, max_ds in SELECTION:
            analysis = folder.split("/")[-1]
            result = next(r for r in dbs[db].expResultList if r.globalInfo.id == analysis.removesuffix("-eff")
                          and (r.datasets[0].dataInfo.dataType == "efficiencyMap") == (kind == "efficiency"))
            entries, points = [], None
            having = [(ds, t) for ds in result.datasets for t in ds.txnameList if t.txName == txname_name]
            for ds, tx in having[:max_ds]:
                data = tx.txnameDataExp if kind == "expected" else tx.txnameData
                if points is None:
                    flat_attrs = [tx.dataMap[a][1] for a in sorted(tx.dataMap)]
                    is_width = np.array([a == "totalwidth" for a in flat_attrs])
                    x = np.array([tx.transformPoint(p) for p in _raw_points(tx, kind)])
                    points = draw_points(x, is_width, rng)
                    order = layout_order(tx)
                values = [data.getValueFor([float(v) for v in p]) for p in points]
                entries.append({"dataset": ds.dataInfo.dataId, "values": [
                    None if v is None else float(v) for v in values]})
            ours = points[:, order].copy()
            for col, a in enumerate(order):
                if is_width[a]:
                    ours[:, col] = [unscaleWidth(v) for v in points[:, a]]
            rotated = None if data.dimensionality < 2 else [[float(v).hex() for v in p] for p in data.tri.points]
            out["maps"].append({"database": db, "folder": folder, "txname": txname_name, "kind": kind,
                                "dimensionality": data.dimensionality, "points": ours.tolist(),
                                "datasets": entries, "delta_x": [float(v).hex() for v in data.delta_x[0]],
                                "rotated_points": rotated})
    args.out.write_text(json.dumps(out, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(out['maps'])} maps)")


def _raw_points(tx, kind: str) -> list:
    """The map's data points (x values) as SModelS read them from the text file."""
    tag = {"observed": "upperLimits", "expected": "expectedUpperLimits", "efficiency": "efficiencyMap"}[kind]
    text = Path(tx.path).read_text()
    for line in concatenateLines(text.split("\n")):
        if line.split(":", 1)[0].strip() == tag:
            return [p[0] for p in tx.evaluateString(line.split(":", 1)[1].strip())]
    raise KeyError(tag)


if __name__ == "__main__":
    main()
