"""Benchmarks: run with `make bench` (or `pytest -s tests/benchmarks`); not part of `make test`."""

from tests.conftest import db124, db300extra, oracle, shared  # noqa: F401  (re-export fixtures)
