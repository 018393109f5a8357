# Two entry points (see README): `make demo` and `make test`. Both create/update .venv/ themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Blender 4.5 LTS add-on tests run in their own venv (bpy 4.5 and 5.0 cannot share one).
VENV45 := .venv-bpy45
STAMP45 := $(VENV45)/.installed

.PHONY: venv venv45 test test-fast test-slow lint demo default-model addon clean

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

# The whole suite: ml_core + Blender 5.0 tests in .venv, then the add-on tests again on Blender 4.5.
test: venv venv45
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
	FOMM_WORKER_PYTHON=$(abspath $(PY)) $(VENV45)/bin/python -m pytest -q -p no:cacheprovider tests/blender_fomm tests/tools

test-fast: venv
	$(PY) -m pytest -q -x tests/ml_core

test-slow: venv
	$(PY) -m pytest -q -m slow tests

lint: venv
	$(PY) -m ruff check .

demo: venv
	$(PY) -m demo

# Re-train the embedded default model from scratch (synthetic data -> training -> export -> evaluation).
default-model: venv
	PY=$(PY) ml_core/train/make_default_model.sh

# Build the installable extension zips into dist/ (see docs/installing.md).
addon: venv
	$(PY) build_addon.py --output dist/

clean:
	rm -rf $(VENV) $(VENV45) .pytest_cache demo/out bench/out
