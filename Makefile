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

# The demo always uses the demo database and query, whatever .env says.
DEMO_ENV := VM_DATABASE_URL=sqlite:///data/demo.db VM_QUERY=sql/daily_volume.sql

demo: $(INSTALLED)
	$(DEMO_ENV) $(PY) -m volume_monitor.cli demo-db --url sqlite:///data/demo.db
	$(DEMO_ENV) $(PY) train.py --promote
	$(DEMO_ENV) $(PY) deploy.py
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
