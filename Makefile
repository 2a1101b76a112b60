# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
# `make test` lints and type-checks first (`make lint`), and stops there when either fails.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-unit crash down clean sandbox

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

infra/kafka/libs/.fetched: infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/infra/kafka/libs
	touch $@

# bubblewrap, which the executor's enforced sandbox runs every tool call in (apt-get; idempotent).
sandbox:
	sh infra/install_sandbox.sh

demo: $(STAMP) infra/kafka/libs/.fetched sandbox
	$(VENV)/bin/agentlog demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint infra/kafka/libs/.fetched sandbox
	$(VENV)/bin/pytest -q

crash: $(STAMP) infra/kafka/libs/.fetched sandbox
	$(VENV)/bin/pytest -q -m crash

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

down:
	$(VENV)/bin/agentlog down

clean: down
	rm -rf .agentlog
