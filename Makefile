# gpufleet: two commands do all set-up on a fresh machine.
#   make demo  — the whole story on a simulated fleet (SQLite, local ranks)
#   make test  — the full test suite (installs what it needs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: demo test lint typecheck bench protos clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" "numpy>=1.26"
	$(BIN)/pip install -q -e ".[dev,burnin]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy agent controller gpufleet_common protos examples bench tests demo
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy agent controller gpufleet_common protos examples bench tests demo

protos: $(STAMP)
	$(BIN)/python -m protos.gen

bench: $(STAMP)
	$(BIN)/python bench/agent_sweep.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
