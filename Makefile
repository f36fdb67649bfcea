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

# The demo always uses the demo database and its two monitors, whatever .env says.
DEMO_ENV := VM_MONITORS=monitors.demo.yml

demo: $(INSTALLED)
	$(DEMO_ENV) $(PY) -m volume_monitor.cli demo-db --url sqlite:///data/demo.db
	$(DEMO_ENV) $(PY) train.py --promote
	$(DEMO_ENV) $(PY) deploy.py
	@echo
	@echo "Results: results/<monitor>/<day>/. History: $(DEMO_ENV) $(VENV)/bin/volume-monitor history --monitor orders"
	@echo "Runs and models: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
	@echo "Dashboard: $(DEMO_ENV) $(VENV)/bin/volume-monitor serve   (then open http://127.0.0.1:8050/)"

# One worker per core; each test file runs whole on one worker, so its module fixtures are
# built once. The files go out in the order conftest.py gives them (the slow soak first): the
# worker that takes it runs the rest of the suite's share beside it.
test: $(INSTALLED) lint
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data/*.db results/*/ mlruns/mlflow.db mlruns/artifacts logs/*.log* state/*.db*
