# Every target builds .venv from requirements.lock when it is missing or older than the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# nbgrader runs tools such as `alembic` by name: find them in .venv.
export PATH := $(abspath $(BIN)):$(PATH)
# jupyter refuses to run as root unless told it may (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test lint format release grade report export clean

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

lab: $(INSTALLED)
	$(BIN)/jupyter lab $(ROOT_FLAG)

test: lint
	$(BIN)/pytest -q --nbval-cell-timeout=120 tests --nbval course source

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

release: $(INSTALLED)
	$(BIN)/autograd-course release

grade: $(INSTALLED)
	$(BIN)/autograd-course grade submitted --json grades.json

report: $(INSTALLED)
	$(BIN)/autograd-course report grades.json --out report

export: $(INSTALLED)
	$(BIN)/nbgrader export

clean:
	rm -rf $(VENV) build *.egg-info
