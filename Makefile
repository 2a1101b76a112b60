# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit crash down clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

infra/kafka/libs/.fetched: infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/infra/kafka/libs
	touch $@

demo: $(STAMP) infra/kafka/libs/.fetched
	$(VENV)/bin/agentlog demo

test: $(STAMP) infra/kafka/libs/.fetched
	$(VENV)/bin/pytest -q

crash: $(STAMP) infra/kafka/libs/.fetched
	$(VENV)/bin/pytest -q -m crash

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

down:
	$(VENV)/bin/agentlog down

clean: down
	rm -rf .agentlog
