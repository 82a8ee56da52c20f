"""Selection semantics, the compiled cache, `db fetch` from a local archive, and the db CLI."""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tdmcmc.cli import main
from tdmcmc.disk_cache import cache_dir
from tdmcmc.models.database.compiled import load_compiled
from tdmcmc.models.database.fetch import fetch
from tdmcmc.models.database.selection import select

pytestmark = pytest.mark.realdata


def test_selection_like_smodels(db124_compiled) -> None:
    db = db124_compiled.database
    cms = select(db, analyses=["CMS-SUS-16-050"])
    assert {r.folder for r in cms.results} == {"CMS-SUS-16-050", "CMS-SUS-16-050-eff"} & {r.folder for r in db.results}
    assert {r.folder for r in select(db, analyses=["ATLAS-SUSY-2016-16-eff"]).results} == {"ATLAS-SUSY-2016-16-eff"}
    ul = select(db, data_types=["upperLimit"])
    assert len(ul.results) == 74 and all(ds.data_type == "upperLimit" for ds in ul.datasets)
    t2 = select(db, txnames=["T2tt*"])
    assert t2.txnames and all(tx.name.startswith("T2tt") for tx in t2.txnames)
    srs = select(db, analyses=["ATLAS-SUSY-2016-16*"], datasets=["bWN", "tN_high"])
    assert sorted(ds.data_id for ds in srs.datasets) == ["bWN", "tN_high"]
    # The filtered 1.2.4 copy holds only validated: True maps, so the three modes agree here.
    assert len(select(db, validation="strict").txnames) == len(select(db, validation="all").txnames) == 951
    expected_only = select(db, only_with_expected=True, data_types=["upperLimit"])
    assert len(expected_only.txnames) == 78
    with pytest.raises(ValueError, match="validation must be"):
        select(db, validation="loose")


def test_validation_modes_and_superseded(db124: Path, tmp_path: Path) -> None:
    root = tmp_path / "db"
    rel = "8TeV/ATLAS/ATLAS-CONF-2013-089"
    shutil.copytree(db124 / rel, root / rel)
    tx = root / rel / "data/T6WW.txt"
    tx.write_text(tx.read_text().replace("validated: True", "validated: N/A"))
    info = root / rel / "globalInfo.txt"
    info.write_text(info.read_text() + "supersededBy: ATLAS-SUSY-2013-20\n")
    db = load_compiled(root, use_cache=False).database
    assert len(select(db, include_superseded=True).txnames) == 1  # N/A kept, as SModelS does
    assert len(select(db, include_superseded=True, validation="strict").txnames) == 0
    assert select(db).results == ()  # superseded results are out by default


def test_cache_round_trip_and_invalidation(db124: Path, tmp_path: Path) -> None:
    root = tmp_path / "db"
    rel = "13TeV/ATLAS/ATLAS-SUSY-2016-16-eff"
    shutil.copytree(db124 / rel, root / rel)
    cold = load_compiled(root)
    warm = load_compiled(root)
    assert warm.database.content_hash == cold.database.content_hash
    assert len(list((cache_dir() / "db").glob(f"{cold.database.content_hash}-*.pkl"))) == 1
    for a, b in zip(cold.arrays.map_values, warm.arrays.map_values, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cold.arrays.observed_n, warm.arrays.observed_n)
    data_info = root / rel / "bWN/dataInfo.txt"
    data_info.write_text(data_info.read_text().replace("observedN: 68", "observedN: 69"))
    changed = load_compiled(root)
    assert changed.database.content_hash != cold.database.content_hash
    bwn = list(changed.arrays.dataset_id).index("bWN")
    assert changed.arrays.observed_n[bwn] == 69


def test_arrays_agree_with_records(db124_compiled) -> None:
    arrays, db = db124_compiled.arrays, db124_compiled.database
    assert len(arrays.dataset_id) == len(db.datasets) == 340
    assert len(arrays.map_values) == sum(
        (tx.upper_limits is not None) + (tx.expected_upper_limits is not None) + (tx.efficiency_map is not None)
        for tx in db.txnames)
    (r_index, (ds_index, matrix)), = arrays.covariances.items()
    assert arrays.result_id[r_index] == "CMS-PAS-SUS-16-052-agg" and matrix.shape == (17, 17)
    assert list(arrays.dataset_id[ds_index][:3]) == ["ar1", "ar2", "ar3"]
    np.testing.assert_allclose(np.sqrt(np.diag(matrix)), arrays.bg_error[ds_index], rtol=2e-3)


def test_warm_load_of_the_full_database_is_fast(db124_compiled, db124: Path) -> None:
    # Not a timing test (those are benchmarks): only that the warm path is the cache, which
    # takes a fraction of a cold parse on any machine.
    start = time.perf_counter()
    warm = load_compiled(db124)
    assert warm.database.content_hash == db124_compiled.database.content_hash
    assert time.perf_counter() - start < 3.0


def test_fetch_from_a_local_archive(db124: Path, tmp_path: Path) -> None:
    src = tmp_path / "smodels-database-release-1.2.4"
    rel = "13TeV/ATLAS/ATLAS-SUSY-2016-16-eff"
    shutil.copytree(db124 / rel, src / rel)
    shutil.copy(db124 / "version", src / "version")
    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    root = fetch("1.2.4", url=archive.as_uri(), dest=tmp_path / "cache")
    assert root == tmp_path / "cache/databases/1.2.4"
    assert (root / rel / "globalInfo.txt").is_file() and (root / "version").read_text().strip() == "1.2.4"
    assert fetch("1.2.4", url="file:///nonexistent.tar.gz", dest=tmp_path / "cache") == root  # reused


def test_fetch_errors_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["db", "fetch", "9.9.9", "--dest", str(tmp_path)]) == 2
    assert "unknown database release '9.9.9'" in capsys.readouterr().err
    assert main(["db", "fetch", "x", "--url", "file:///nonexistent.tgz", "--dest", str(tmp_path)]) == 2
    assert "could not download file:///nonexistent.tgz" in capsys.readouterr().err


def test_db_info_json_cli(db124: Path, db124_compiled, capsys: pytest.CaptureFixture) -> None:
    assert main(["db", "info", str(db124), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_results"], info["n_analyses"], info["n_txnames"], info["n_txnames_all_zero"]) == (103, 80, 951, 14)


def test_db_validate_cli_lists_every_problem(db124: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "db"
    for rel in ("13TeV/ATLAS/ATLAS-SUSY-2016-16-eff", "8TeV/ATLAS/ATLAS-CONF-2013-089"):
        shutil.copytree(db124 / rel, root / rel)
    assert main(["db", "validate", str(root)]) == 0
    capsys.readouterr()
    for rel in ("13TeV/ATLAS/ATLAS-SUSY-2016-16-eff/bWN/dataInfo.txt", "8TeV/ATLAS/ATLAS-CONF-2013-089/globalInfo.txt"):
        f = root / rel
        f.write_text(f.read_text().replace("lumi: ", "lumi: x").replace("bgError: 16", "bgError: -1"))
    assert main(["db", "validate", str(root), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert len(problems) == 2
    assert main(["db", "info", str(root)]) == 2
    assert "key 'bgError'" in capsys.readouterr().err


def test_smodels_pickles_do_not_change_the_content_hash(db124: Path, tmp_path: Path) -> None:
    root = tmp_path / "db"
    rel = "13TeV/ATLAS/ATLAS-SUSY-2016-16-eff"
    shutil.copytree(db124 / rel, root / rel)
    before = load_compiled(root).database.content_hash
    (root / rel / ".db3.pcl").write_bytes(b"SModelS' own pickle")
    (root / "db3.pcl").write_bytes(b"another")
    assert load_compiled(root).database.content_hash == before
