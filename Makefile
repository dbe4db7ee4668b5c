# Dynasync — every command a newcomer or CI needs. Only Python 3.11+, Java 17+ and Maven are
# assumed; everything else (virtualenv, packages, Kafka jars) is fetched by these targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
LOCK_VENV := .cache/lock-venv
PIP_COMPILE := $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --strip-extras --allow-unsafe \
  --no-emit-find-links --no-emit-index-url
KAFKA := deploy/kafka/kafka.sh
KAFKA_PORT ?= 9092
BOOTSTRAP := 127.0.0.1:$(KAFKA_PORT)
CLUSTER_BOOTSTRAP := 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
PYTEST_ARGS ?=
export KAFKA_PORT

.PHONY: help venv lock manifests lint fmt test test-unit chaos-busy kafka-up kafka-down kafka-cluster-up kafka-cluster-down \
        demo topics clean up down status bench bench-restore

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# The venv installs exactly what requirements.lock pins (with hashes), then the project itself
# without resolving anything; `pip check` fails if pyproject.toml asks for a package the lock
# lacks (then: make lock).
$(STAMP): pyproject.toml $(LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11+ is required ('$(PYTHON)' not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --require-hashes -r $(LOCK)
	$(VENV)/bin/pip install -q --no-deps -e .
	$(VENV)/bin/pip check || { echo "$(LOCK) does not cover pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its dev tools from requirements.lock

LOCK_ARGS ?=
# pip-tools in its own venv (.cache/lock-venv); keeps the pins it can unless LOCK_ARGS=--upgrade.
# The runtime lock (the container image's) is constrained to the same versions as the dev lock.
lock: ## re-resolve requirements.lock and requirements-runtime.lock from pyproject.toml
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q "pip-tools>=7.4,<8"
	$(PIP_COMPILE) --extra dev -o $(LOCK) $(LOCK_ARGS) pyproject.toml
	$(PIP_COMPILE) -c $(LOCK) -o $(RUNTIME_LOCK) $(LOCK_ARGS) pyproject.toml

lint: $(STAMP) ## ruff, formatting and mypy (strict), and the schema files against the models
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy schemas connectors pipeline emulators tests bench soak
	$(PY) -m schemas.export --check
	$(PY) -m pipeline.manifests --check

fmt: $(STAMP) ## format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

manifests: $(STAMP) ## regenerate deploy/k8s/kafka-topics.yaml and kafka-users.yaml from the topic catalogue
	$(PY) -m pipeline.manifests

kafka-up: $(STAMP) ## start one Kafka broker (KRaft) on 127.0.0.1:$(KAFKA_PORT)
	$(KAFKA) up

kafka-down: ## stop it
	$(KAFKA) down

kafka-cluster-up: $(STAMP) ## start three brokers (RF 3, min.insync 2) on 19092-19094
	$(KAFKA) cluster-up

kafka-cluster-down: ## stop them
	$(KAFKA) cluster-down

topics: $(STAMP) ## create the topic catalogue on the running broker
	$(PY) -m pipeline.cli topics create --bootstrap $(BOOTSTRAP)

test-unit: $(STAMP) ## the tests that need no broker
	$(VENV)/bin/pytest -q -m "not kafka and not cluster" $(PYTEST_ARGS)

# Starts the broker (and, for the cluster tests, three more) unless one already runs, runs the
# whole suite, and stops what it started even when the suite fails.
test: $(STAMP) ## set everything up, run the whole suite against a real broker, tear down
	@started=""; \
	trap 'for s in $$started; do if [ $$s = single ]; then $(KAFKA) down; else $(KAFKA) cluster-down; fi; done' EXIT; \
	if ! $(KAFKA) bootstrap single >/dev/null 2>&1; then started="single"; $(KAFKA) up; fi; \
	started="$$started cluster"; $(KAFKA) cluster-up; \
	DYNASYNC_KAFKA_BOOTSTRAP=$(BOOTSTRAP) DYNASYNC_KAFKA_REQUIRED=1 \
	DYNASYNC_KAFKA_CLUSTER_BOOTSTRAP=$(CLUSTER_BOOTSTRAP) \
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

CHAOS_RUNS ?= 1
# The chaos tests while one core is kept busy by a spinning process (recovery must not depend on
# an idle machine): CHAOS_RUNS times in a row, stopping at the first failure; the broker is
# started as in `make test` and stopped if it was started here.
chaos-busy: $(STAMP) ## tests/chaos with one core kept busy, CHAOS_RUNS times in a row
	@started=""; \
	trap 'kill $$burner 2>/dev/null || true; for s in $$started; do $(KAFKA) down; done' EXIT; \
	if ! $(KAFKA) bootstrap single >/dev/null 2>&1; then started="single"; $(KAFKA) up; fi; \
	$(PYTHON) -c 'while True: pass' & burner=$$!; \
	for run in $$(seq 1 $(CHAOS_RUNS)); do \
	  echo "chaos run $$run of $(CHAOS_RUNS), one core busy"; \
	  DYNASYNC_KAFKA_BOOTSTRAP=$(BOOTSTRAP) DYNASYNC_KAFKA_REQUIRED=1 \
	  $(VENV)/bin/pytest -q -p no:cacheprovider tests/chaos $(PYTEST_ARGS) || exit 1; \
	done

BENCH_ARGS ?=
# Starts a broker unless one already runs on $(KAFKA_PORT), and stops only the one it started.
# Two sections: the engine against a raw aiokafka pass-through, then end to end through both
# emulators and a `dynasync run` process (about 10 minutes on 2 cores). Pick with BENCH_ARGS,
# e.g. "--only e2e --e2e-mailboxes 1,10" (python -m bench --help lists every option).
bench: $(STAMP) ## engine vs raw aiokafka, then end to end through both emulators (bench/results)
	@started=""; \
	trap 'if [ -n "$$started" ]; then $(KAFKA) down; fi' EXIT; \
	if ! $(KAFKA) bootstrap single >/dev/null 2>&1; then started="single"; $(KAFKA) up; fi; \
	$(PY) -m bench --bootstrap $(BOOTSTRAP) --out bench/results/latest.json \
	  --plot bench/results/e2e.svg \
	  --kafka-version "$$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)" \
	  $(BENCH_ARGS)

RESTORE_ARGS ?=
bench-restore: $(STAMP) ## how long a restarted worker takes to restore 100,000 links (bench/results/restore.json)
	@started=""; \
	trap 'if [ -n "$$started" ]; then $(KAFKA) down; fi' EXIT; \
	if ! $(KAFKA) bootstrap single >/dev/null 2>&1; then started="single"; $(KAFKA) up; fi; \
	$(PY) -m bench.restore --bootstrap $(BOOTSTRAP) --out bench/results/restore.json $(RESTORE_ARGS)

SOAK_MINUTES ?= 30
SOAK_ARGS ?=
# Not in CI. Starts the three-broker cluster unless it runs (and stops it only then), both
# emulators in-process and `dynasync run`; random edits on 20 mailboxes while the worker is
# killed -9, a broker node stops, and each side has 500/503/429/timeout/reset outages; exits 1
# if a check fails. A short run: make soak SOAK_ARGS=--smoke (python -m soak --help).
.PHONY: soak
soak: $(STAMP) ## SOAK_MINUTES (30) of edits under kill -9, broker and API outages (.run/soak)
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) -m soak $(SOAK_ARGS)

DEMO_ARGS ?=
# `make up`, then demo mailboxes registered and narrated as they sync; the stack keeps running.
demo: $(STAMP) ## start the stack (as make up) and show mailboxes syncing both ways; make down stops it
	deploy/run/stack.sh up
	@$(PY) -m pipeline.cli demo --bootstrap $(BOOTSTRAP) \
	  --graph-url http://127.0.0.1:$${GRAPH_PORT:-8081} \
	  --dataverse-url http://127.0.0.1:$${DATAVERSE_PORT:-8082} $(DEMO_ARGS) \
	  $$(url=$$(grep -ho 'status page, /metrics, /healthz and /readyz on http://[0-9.:]*' \
	    .run/stack/worker.log .run/stack/worker-1.log 2>/dev/null | tail -1); \
	    [ -n "$$url" ] && echo --status-page "$${url##* on }") \
	  || { echo "demo failed; the pipeline's log: .run/stack/worker.log (stop with: make down)"; exit 1; }
	@echo "The stack keeps running (logs in .run/stack): the status page stays up at the URL above;"
	@echo "see it all with: make status; stop it with: make down"

up: $(STAMP) ## run Kafka, the topics, both emulators and a worker in the background (.run/stack)
	deploy/run/stack.sh up

down: ## stop what `make up` started (a broker it found running is left alone)
	deploy/run/stack.sh down

status: ## what `make up` runs
	@deploy/run/stack.sh status || true

clean: ## stop Kafka and remove local state (keeps the jar cache and .venv)
	-$(KAFKA) down
	-$(KAFKA) cluster-down
	rm -rf .run
