"""Files that must never be seen half-written, and the on-disk cache of everything compiled once
and reused (databases, topology tables, interpolators): where it lives, atomic writes, and
pickles that are simply rebuilt when missing, truncated or of an older layout. Generic: used by
the engine's checkpoints and by the models alike."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """``$TDMCMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/tdmcmc``, else ``~/.cache/tdmcmc``."""
    if "TDMCMC_CACHE_DIR" in os.environ:
        return Path(os.environ["TDMCMC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tdmcmc"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pickle(path: Path, kind: type) -> Any | None:
    """The object pickled at `path` if it is a `kind`; None when missing, broken or stale."""
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    return obj if isinstance(obj, kind) else None


def save_pickle(path: Path, obj: Any) -> None:
    atomic_write(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
