# Two commands do all set-up on a fresh machine (see README):
#   make run    sets up .venv and runs the main job on the default (demo) database
#   make test   sets up .venv and runs the test suite
# The venv is rebuilt when pyproject.toml changes.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_ARGS ?=
RUN_OUT  ?= run.nc

.PHONY: run test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/find-python
	@python=$$(scripts/find-python) && echo "using $$python" && "$$python" -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,pyhf]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tdmcmc sample --model protomodel $(if $(RUN_ARGS),--database $(RUN_ARGS)) \
	    --chains 4 --tune 300 --draws 300 --sharpened 2 --seed 1 -o $(RUN_OUT)
	$(VENV)/bin/tdmcmc summary $(RUN_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pytest -q -s -o python_files='bench_*.py' tests/benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
