# `make test` and `make run` set up what they need: a .venv with the pinned requirements, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test run lint bench

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: install
	bash scripts/test-services.sh
	$(PY) -m pytest -q

run: install
	$(VENV)/bin/robotrain serve

# What the repository promises about its code: lint, formatting, types, and the layering of docs/architecture.md.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The benchmarks print their figures as ratios to a baseline measured in the same run (README, "Benchmarks").
bench: install
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
