# PRD Tool - the two commands that matter: `make dev` (run it) and `make test` (prove it).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PORT ?= 3000
# The app targets Lambda's python3.12 (DESIGN §4: dulwich's native wheels need cp312 in sam build).
PYTHON312 ?= $(shell for p in $$(command -v python3.12) $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do [ -x "$$p" ] && "$$p" -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
PIP_QUIET := --quiet --disable-pip-version-check
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help dev reset test test-unit test-integration test-infra lint typecheck docs bench build validate deploy clean web browser test-web

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-17s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt layers/deps/requirements.txt layers/documents/requirements.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is required (pyenv install 3.12, or apt-get install python3.12)"; exit 1; }
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v 'is ignored' || true
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt 2>&1 | grep -v 'is ignored' ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 is required"; exit 1; }
	@test -x $(SAM_VENV)/bin/python || $(PYTHON312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements-sam.txt 2>&1 | grep -v 'is ignored' ; test $${PIPESTATUS[0]} -eq 0
	@touch $@

venv: $(VENV)/.installed
sam-venv: $(SAM_VENV)/.installed

# ---- web client (web/): npm ci from the lock file, vite build into web/dist, only when sources changed
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json
CHROMIUM ?= /usr/bin/chromium

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $@

web/dist/.built: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build
	@touch $@

web: web/dist/.built ## Build the web client into web/dist (when its sources changed)

# The browser tests drive Debian's Chromium (never a downloaded browser).
$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests"
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y chromium

browser: $(CHROMIUM)

test-web: $(VENV)/.installed web browser ## Web client: typecheck, Vitest unit tests, browser tests (Chromium)
	cd web && npx tsc --noEmit && npx vitest run
	$(PY) -m pytest tests/browser -q

dev: $(VENV)/.installed web ## Run the whole product locally on http://localhost:$(PORT) (Ctrl-C stops)
	PORT=$(PORT) $(PY) -m scripts.localstack

reset: ## Forget the local stack's saved data (the next `make dev` starts clean)
	rm -rf .local/state

test: $(VENV)/.installed $(SAM_VENV)/.installed web browser ## Install what is needed and run every test suite
	$(PY) -m ruff check .
	$(PY) -m mypy
	cd web && npx tsc --noEmit && npx vitest run
	$(PY) -m pytest tests -q ; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test-unit: $(VENV)/.installed ## Unit tests only (no network)
	$(PY) -m pytest tests/unit -q

test-integration: $(VENV)/.installed ## Tests against the local stack
	$(PY) -m pytest tests/integration tests/localstack -q

test-infra: $(VENV)/.installed $(SAM_VENV)/.installed ## Template lint/build and schema agreement
	$(PY) -m pytest tests/infra -q

lint: $(VENV)/.installed ## ruff
	$(PY) -m ruff check .

typecheck: $(VENV)/.installed ## mypy on shared/
	$(PY) -m mypy

docs: $(VENV)/.installed ## Regenerate docs/policy.md and docs/openapi.json
	$(PY) scripts/gen_docs.py

bench: $(VENV)/.installed ## Benchmarks (results go to docs/benchmarks.md by hand, with the command)
	$(PY) -m scripts.bench

validate: $(SAM_VENV)/.installed ## sam validate --lint
	$(SAM) validate --lint

build: $(SAM_VENV)/.installed ## sam build (no Docker), then compile bytecode that validates in Lambda
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM) build
	$(PY) -m compileall -q --invalidation-mode unchecked-hash .aws-sam/build

deploy: build web ## sam deploy, then upload web/dist (first time: `make deploy DEPLOY_ARGS=--guided`)
	$(SAM) deploy $(DEPLOY_ARGS)
	$(PY) scripts/deploy_web.py $(DEPLOY_WEB_ARGS)

clean: ## Remove build output and virtual environments
	rm -rf .aws-sam $(VENV) $(SAM_VENV) .pytest_cache .ruff_cache .mypy_cache web/dist web/node_modules
