# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
# `make test` lints and type-checks first (`make lint`), and stops there when either fails.
# What the tests need is fetched side by side (Python packages, Kafka's jars, the collector,
# Debian's packages).
MAKEFLAGS += --jobs=4
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
COLLECTOR := infra/otel/bin/otelcol-agentlog

.PHONY: demo lint test test-unit crash collector down clean sandbox debian-packages

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

infra/kafka/libs/.fetched: infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/infra/kafka/libs
	touch $@

# The OpenTelemetry Collector the tests export spans to (built from the Go module proxy).
$(COLLECTOR): infra/otel/builder.yaml infra/otel/build.sh
	infra/otel/build.sh

collector: $(COLLECTOR)

# Debian's packages: bubblewrap (the executor's sandbox runs every tool call in it) and, for the
# tests, chromium (the console's browser tests). One apt-get run, so none fights another's lock.
sandbox:
	sh infra/debian-packages.sh bubblewrap

debian-packages:
	sh infra/debian-packages.sh bubblewrap chromium

demo: $(STAMP) infra/kafka/libs/.fetched sandbox
	$(VENV)/bin/agentlog demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint infra/kafka/libs/.fetched $(COLLECTOR) debian-packages
	$(VENV)/bin/pytest -q

crash: $(STAMP) infra/kafka/libs/.fetched sandbox
	$(VENV)/bin/pytest -q -m crash

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

down:
	$(VENV)/bin/agentlog down

clean: down
	rm -rf .agentlog
