# Every target builds .venv from requirements.lock when it is missing or older than the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# On Linux, PyPI's torch is the CUDA build, which brings over 2 GB of nvidia/CUDA packages;
# `make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs the CPU-only build.
TORCH_INDEX ?=
# nbgrader runs tools such as `alembic` by name: find them in .venv.
export PATH := $(abspath $(BIN)):$(PATH)
# jupyter refuses to run as root unless told it may (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test lint format release grade report export clean hub hub-test

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

lab: $(INSTALLED)
	$(BIN)/jupyter lab $(ROOT_FLAG)

# A class on one server (README): JupyterHub on 127.0.0.1, run as root.
# `make hub INSTRUCTOR=<account> STUDENTS=<file of account names>`
HUB_PORT ?= 8000
HUB_STATE ?= /var/lib/autograd-course-hub
PROXY := hub/node_modules/.bin/configurable-http-proxy
$(PROXY): hub/package.json hub/package-lock.json
	npm ci --prefix hub --no-audit --no-fund --loglevel=error
	touch $@

hub: $(INSTALLED) $(PROXY)
	AUTOGRAD_HUB_INSTRUCTOR="$(INSTRUCTOR)" AUTOGRAD_HUB_STUDENTS="$(abspath $(STUDENTS))" \
		AUTOGRAD_HUB_PORT=$(HUB_PORT) AUTOGRAD_HUB_STATE="$(HUB_STATE)" hub/run

# A class with real Linux accounts: on one machine (the exchange), graded by an ordinary account,
# and on the hub end to end in a real browser (tests/hub/).
hub-test: $(INSTALLED) $(PROXY)
	$(BIN)/pytest -q $(ACCOUNT_TESTS)

# The tests that create Linux accounts (as root): `make hub-test` runs them; CI runs both.
ACCOUNT_TESTS := tests/test_exchange.py tests/test_unprivileged_grading.py tests/hub
test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile --nbval-cell-timeout=120 \
		$(ACCOUNT_TESTS:%=--ignore=%) tests --nbval course source

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
