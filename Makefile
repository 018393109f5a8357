# Two entry points (see README): `make demo` and `make test`. Both create/update .venv/ themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Blender 4.5 LTS add-on tests run in their own venv (bpy 4.5 and 5.0 cannot share one).
VENV45 := .venv-bpy45
STAMP45 := $(VENV45)/.installed
# Blender 5.2 LTS (Python 3.13): `make test-bpy52`, also run by `make test` when a Python 3.13 is found
# (pyenv's if installed, else python3.13 on PATH, or PYTHON313=...); without one `make test` says it skipped it.
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) python3.13)
VENV52 := .venv-bpy52
STAMP52 := $(VENV52)/.installed

.PHONY: venv venv45 venv52 test test-bpy45 test-bpy52 test-fast test-slow lint demo default-model addon bench-env clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP)

$(STAMP45): requirements-bpy45.txt
	@test -x $(VENV45)/bin/python || $(PYTHON) -m venv $(VENV45)
	$(VENV45)/bin/python -m pip install -q --upgrade pip
	$(VENV45)/bin/python -m pip install -q -r requirements-bpy45.txt
	@touch $@

venv45: $(STAMP45)

$(STAMP52): requirements-bpy52.txt
	@test -x $(VENV52)/bin/python || $(PYTHON313) -m venv $(VENV52)
	$(VENV52)/bin/python -m pip install -q --upgrade pip
	$(VENV52)/bin/python -m pip install -q -r requirements-bpy52.txt
	@touch $@

venv52: $(STAMP52)

# The whole suite: ml_core + Blender 5.0 tests in .venv, then the add-on tests again on Blender 4.5 and 5.2.
# A Blender version whose Python or bpy wheel this machine lacks (its venv does not install) is skipped, saying why;
# a failing test still fails `make test`.
test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests
	@if $(MAKE) --no-print-directory venv45; then $(MAKE) --no-print-directory test-bpy45; \
	else echo "SKIPPED: Blender 4.5 tests (requirements-bpy45.txt did not install: no bpy 4.5 wheel for this platform?)"; fi
	@if ! command -v $(PYTHON313) >/dev/null 2>&1; then \
	echo "SKIPPED: Blender 5.2 tests (no Python 3.13 found; set PYTHON313=/path/to/python3.13)"; \
	elif $(MAKE) --no-print-directory venv52; then $(MAKE) --no-print-directory test-bpy52; \
	else echo "SKIPPED: Blender 5.2 tests (requirements-bpy52.txt did not install: no bpy 5.2 wheel for this platform?)"; fi

# The add-on and tools tests on Blender 4.5 LTS.
test-bpy45: venv venv45
	FOMM_WORKER_PYTHON=$(abspath $(PY)) $(VENV45)/bin/python -m pytest -q -p no:cacheprovider tests/blender_fomm tests/tools

# The add-on tests on Blender 5.2 LTS, then the 5.1-up lean zip installed into it (the build runs in .venv).
test-bpy52: venv venv52
	FOMM_WORKER_PYTHON=$(abspath $(PY)) $(VENV52)/bin/python -m pytest -q -p no:cacheprovider tests/blender_fomm tests/tools
	$(PY) -m pytest -q tests/test_packaging.py -k blender_52

test-fast: venv
	$(PY) -m pytest -q -x tests/ml_core

test-slow: venv
	$(PY) -m pytest -q -m slow tests

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo: venv
	$(PY) -m demo

# Re-train the embedded default model from scratch (synthetic data -> training -> export -> evaluation).
default-model: venv
	PY=$(PY) ml_core/train/make_default_model.sh

# The real-footage evaluation's own environment (MediaPipe FaceMesh; never a product dependency):
# bench/eval_real_footage.py runs in .venv and reads FaceMesh's landmarks from files written under .venv-bench.
BENCH_PYTHON ?= python3.11
VENVB := .venv-bench
STAMPB := $(VENVB)/.installed

$(STAMPB): bench/requirements-bench.txt
	@test -x $(VENVB)/bin/python || $(BENCH_PYTHON) -m venv $(VENVB)
	$(VENVB)/bin/python -m pip install -q -r bench/requirements-bench.txt
	@touch $@

bench-env: $(STAMPB)

# Build the installable extension zips into dist/ (see docs/installing.md).
addon: venv
	$(PY) build_addon.py --output dist/

clean:
	rm -rf $(VENV) $(VENV45) $(VENV52) .pytest_cache demo/out bench/out
