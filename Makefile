# streamrec: `make demo` runs the whole loop on the embedded broker, `make test` runs every test.
# Both create .venv, install everything and provision the broker's jars on their own.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where a local folder of wheels sits beside the checkout (our CI and dev machines), install the CPU build
# of torch from it instead of the multi-GB CUDA build; elsewhere torch comes from the package index.
ifneq ($(wildcard ../shared/wheels),)
export PIP_FIND_LINKS ?= $(abspath ../shared/wheels)
TORCH_SPEC ?= torch==2.13.0
endif
TORCH_SPEC ?= torch
PYTEST_ARGS ?=

.PHONY: help install broker demo test unit lint format typecheck bench clean stop images compose-test
help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/pip install -q -e '.[dev,train,serve]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install streamrec with its dev, training and serve extras

broker: install  ## Provision the Kafka jars (once) and start the embedded broker
	$(VENV)/bin/streamrec broker start

demo: install  ## Run the full loop on the embedded broker: generate, replay, worker, recommendations
	$(VENV)/bin/streamrec demo $(DEMO_ARGS)

lint: install typecheck  ## ruff (with the security and blind-except rules) and mypy
	$(VENV)/bin/ruff check .

typecheck: install  ## mypy over the installed namespace (strict for the maths packages)
	tools/typecheck.sh

format: install  ## Sort imports and apply ruff's safe fixes in place
	$(VENV)/bin/ruff check --fix .

test: install lint  ## Lint, provision the broker, then the whole suite on a real broker (containers: make compose-test, run by .ci/run)
	$(VENV)/bin/streamrec broker provision
	$(PY) -m pytest -m "not containers" $(PYTEST_ARGS)

unit: install  ## Only the tests that need no broker
	$(PY) -m pytest -m "not integration and not containers" $(PYTEST_ARGS)

images: install  ## Build the worker, trainer and Kafka images with podman, offline (root; docker/offline.py)
	$(PY) docker/offline.py all

compose-test: install  ## Build every image afresh, run the compose stack end to end with podman, remove it all
	$(VENV)/bin/streamrec broker provision
	$(PY) -m pytest tests/containers $(PYTEST_ARGS)

bench: install  ## Regenerate reports/ (benchmarks and evaluation on real data)
	$(VENV)/bin/streamrec report --out reports

stop:  ## Stop the embedded broker
	$(VENV)/bin/streamrec broker stop

clean:  ## Remove the virtualenv and caches (not the broker's jar cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
