"""``tdmcmc db fetch``: download an official SModelS text-database release and unpack it.

Releases are the tagged archives of the SModelS database-release repository; any ``https://``,
``http://`` or ``file://`` URL of a ``.tar.gz``/``.tgz``/``.zip`` archive works too (tests use a
local ``file://`` archive, as this machine has no internet). Downloads go to
``<cache>/downloads`` and unpack to ``<cache>/databases/<name>``; the unpacked database root is
the folder holding the ``version`` file.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tdmcmc.errors import UserError
from tdmcmc.disk_cache import cache_dir

_RELEASE_ARCHIVE = "https://github.com/SModelS/smodels-database-release/archive/refs/tags/{tag}.tar.gz"
# name -> git tag of the release repository (the tags are not named uniformly).
RELEASES = {"1.2.4": "v1.2.4", "2.1.0": "v2.1.0", "2.2.0": "v2.2.0", "2.3.0": "v2.3.0", "3.0.0": "3.0.0"}


def release_url(name: str) -> str:
    """The archive URL of a known release name, or `name` itself if it is a URL."""
    if "://" in name:
        return name
    if name not in RELEASES:
        raise UserError(f"unknown database release {name!r}; known: {', '.join(RELEASES)} (or give --url)")
    return _RELEASE_ARCHIVE.format(tag=RELEASES[name])


def _download(url: str, target: Path, progress: Callable[[int, int | None], None] | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise UserError(f"could not download {url}: {exc}") from None
    part.replace(target)


def _unpack(archive: Path, dest: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise UserError(f"{archive}: unsafe path {member!r} in archive")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{archive}: not a readable .tar.gz or .zip archive ({exc})") from None


def _database_root(folder: Path) -> Path:
    candidates = sorted(p.parent for p in folder.rglob("version") if any(
        (p.parent / d).is_dir() for d in ("8TeV", "13TeV")))
    if not candidates:
        raise UserError(f"{folder}: the archive holds no SModelS database (no 'version' beside 8TeV/13TeV)")
    return min(candidates, key=lambda p: len(p.parts))


def fetch(name: str, *, url: str | None = None, dest: Path | None = None, force: bool = False,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download and unpack release `name` (or the archive at `url`); returns the database root.

    An already unpacked copy is reused unless `force` is set.
    """
    url = url or release_url(name)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    base = Path(dest) if dest is not None else cache_dir()
    unpacked = base / "databases" / safe
    if unpacked.is_dir() and not force:
        return _database_root(unpacked)
    archive = base / "downloads" / (safe + (".zip" if url.endswith(".zip") else ".tar.gz"))
    _download(url, archive, progress)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        extracted = Path(tmp) / "x"  # never the temporary folder itself, which must stay to be removed
        _unpack(archive, extracted)
        root = _database_root(extracted)
        if unpacked.exists():
            shutil.rmtree(unpacked)
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root), unpacked)
    return unpacked
