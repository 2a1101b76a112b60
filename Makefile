# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
# `make test` lints and type-checks first (`make lint`), and stops there when either fails.
# What the tests need is fetched side by side (Python packages, Kafka's jars, the collector).
MAKEFLAGS += --jobs=4
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
COLLECTOR := infra/otel/bin/otelcol-agentlog

.PHONY: demo lint test test-unit crash collector down clean browser

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

demo: $(STAMP) infra/kafka/libs/.fetched
	$(VENV)/bin/agentlog demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The console's browser tests drive Debian's chromium (installed once, with apt).
browser:
	sh infra/install-browser.sh

test: lint infra/kafka/libs/.fetched $(COLLECTOR) browser
	$(VENV)/bin/pytest -q

crash: $(STAMP) infra/kafka/libs/.fetched
	$(VENV)/bin/pytest -q -m crash

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

down:
	$(VENV)/bin/agentlog down

clean: down
	rm -rf .agentlog
