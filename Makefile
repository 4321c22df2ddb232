# sgen-ops: `make demo` and `make test` are all the set-up there is.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# pytest-xdist: worker processes for the suite (its tests mostly wait on Redis, SQL and subprocesses); loadgroup
# keeps the tests of one xdist_group on one worker. PYTEST_XDIST= runs it in this process alone.
PYTEST_XDIST ?= -n 4 --dist loadgroup

.PHONY: venv demo test lint bench soak down clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,test,bench]"
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

## demo: embedded stack + demo data + worker + scheduler, then JupyterLab (HEADLESS=1: run every notebook and exit)
demo: venv
	$(VENV)/bin/sgen-ops demo $(if $(HEADLESS),--headless,)

## test: the whole suite (real Redis, SQLite, and PostgreSQL when SGEN_OPS_TEST_DATABASE_URL is set)
test: venv
	JUPYTER_PREFER_ENV_PATH=1 $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check sgen_ops worker tests bench
	$(VENV)/bin/mypy

## bench: the benchmarks under bench/, run by hand; results go to bench/RESULTS.md
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

## soak: the chaos soak (issue 12), by hand, not part of `make test`; prints the checker's table and fails
## on a fault. SOAK_ARGS e.g. --seconds 300 --backend postgresql --database-url postgresql://.../postgres;
## --backend postgresql --db-outage 30 stops a private PostgreSQL cluster of the soak's own for 30 s mid-chaos
soak: venv
	$(PY) -m bench.soak $(SOAK_ARGS)

down: venv
	$(VENV)/bin/sgen-ops down

clean:
	rm -rf $(VENV) .sgen-ops .pytest_cache .mypy_cache .ruff_cache
