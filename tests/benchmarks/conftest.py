"""Benchmarks (files bench_*.py, so `make test` never collects them): run with `make bench`."""

from tests.conftest import db124, db300extra, oracle, shared  # noqa: F401  (re-export fixtures)
