# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap the project's own uv
# (pinned, in .tools/) and the locked venv; nothing installed by hand is used (no global uv).
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := $(CURDIR)/.tools/bin/uv
VENV := $(CURDIR)/.venv
export UV_PYTHON_DOWNLOADS := never
# Trust the OS certificate store (as pip and curl do): needed behind TLS-inspecting proxies.
export UV_SYSTEM_CERTS := true
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false

.PHONY: system-deps container-deps test-containers test-compose venv test lint typecheck pytest demo bench docs clean

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Debian: apt-get install python3.11-venv)"; exit 1; }
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet 'uv==$(UV_VERSION)'

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

venv: $(VENV)/.synced

# OS packages the project runs: HAProxy splits and switches serving traffic (deployment stage);
# Chromium runs the browser tests of the Airflow UI plugin (Playwright drives it by path); the demo
# runs its stream (streaming inference) on a private redis-server; Java runs Spark for batch scoring
# with engine: spark (local mode in the tests).
# Idempotent: installs only what is missing (needs root or sudo the first time). Each entry is
# package:program, the program an absolute path or a command looked up on PATH (any Java will do).
SYSTEM_PACKAGES := haproxy:/usr/sbin/haproxy chromium:/usr/bin/chromium redis-server:/usr/bin/redis-server \
	default-jre-headless:java
# The container tests (compose stack, container deployment target) also need a Docker Engine and
# debootstrap, which builds their stand-in base image (mlpipe_dev/containers/standin.py).
CONTAINER_PACKAGES := docker.io:/usr/sbin/dockerd debootstrap:/usr/sbin/debootstrap
system-deps container-deps:
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); missing=""; \
	for entry in $(if $(filter container-deps,$@),$(CONTAINER_PACKAGES),$(SYSTEM_PACKAGES)); do \
	  program="$${entry#*:}"; \
	  case "$$program" in /*) test -x "$$program";; *) command -v "$$program" >/dev/null;; esac \
	    || missing="$$missing $${entry%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  $$SUDO apt-get install -y $$missing || { $$SUDO apt-get update && $$SUDO apt-get install -y $$missing; }; \
	fi

lint: venv
	$(VENV)/bin/ruff check airflow_mlpipe mlpipe_dev dags tests bench
	$(VENV)/bin/ruff format --check airflow_mlpipe mlpipe_dev dags
	$(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test: system-deps lint typecheck pytest

# The container suites: the compose stack (two Celery worker containers) and the container
# deployment target, on a Docker Engine started when none answers (docs/howto/production.md).
test-containers: system-deps container-deps venv
	$(VENV)/bin/python -m pytest -m "compose or containers" $(PYTEST_ARGS)

# The compose stack alone: CI runs it after `make test` (the container target's suite takes longer
# and runs with `make test-containers`).
test-compose: system-deps container-deps venv
	$(VENV)/bin/python -m pytest -m compose $(PYTEST_ARGS)

demo: system-deps venv
	$(VENV)/bin/python -m mlpipe_dev.demo $(DEMO_ARGS)

bench: venv
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

docs: venv
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .tools site .demo
