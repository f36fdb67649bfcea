# volume-monitor: `make demo` sets everything up and runs the whole flow; `make test` tests it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format clean

$(INSTALLED): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(PY) -m volume_monitor.cli demo-db
	$(PY) train.py --promote
	$(PY) deploy.py
	@echo
	@echo "Results: results/ (one folder per scored day). Runs and models: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"

test: $(INSTALLED) lint
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data/*.db results/20* mlruns/mlflow.db mlruns/artifacts logs/*.log*
