# Two entry points for a fresh machine:
#   make run   sets up .venv, builds the demo dataset if missing, opens the app
#   make test  sets up .venv (with test tools and a headless browser), runs the test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export FIFTYONE_DO_NOT_TRACK := true
export FIFTYONE_DATABASE_VALIDATION := false
export YOLO_OFFLINE := 1

.PHONY: setup run demo test lint browser bench

# the tree world's human-annotated images ship inside this wheel; it is downloaded, never
# installed (its dependencies are not needed: the world reads the wheel as a zip)
TREES_WHEEL := deepforest==2.1.0

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -m pip download --no-deps --quiet $(TREES_WHEEL) -d $(VENV)/share/yolo-audit
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m audit demo

run: demo
	$(PY) -m streamlit run streamlit_app.py

# Debian's chromium for the end-to-end browser test (playwright drives it, downloads nothing).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: setup
	$(PY) -m ruff check audit benchmarks pages tests streamlit_app.py
	$(VENV)/bin/lint-imports

test: setup browser
	$(PY) -m ruff check audit benchmarks pages tests streamlit_app.py
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m audit bench speed
	$(PY) -m audit bench findings
