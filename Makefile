# iotman — everything a newcomer needs, on Debian 12 with Python 3.11 and apt.
# `make serve` installs and runs the server; `make test` installs everything and runs lint + tests.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
APT_STAMP := $(VENV)/.apt-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install serve test lint fmt bench system-deps clean docs

$(BIN)/python:
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "iotman needs Python 3.11 or newer"'
	@$(PY) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing; installing it with apt-get"; rm -rf $(VENV); \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv && $(PY) -m venv $(VENV); }

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the tests and benchmarks use: wrk (load generation), chromium (SSE in a real
# browser, driven by Playwright), mosquitto (MQTT push and connectors run against a real broker).
DEBIAN_PACKAGES := wrk chromium mosquitto
system-deps: $(APT_STAMP)
$(APT_STAMP): $(BIN)/python
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	@touch $(APT_STAMP)

serve: install
	$(BIN)/iotman serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint system-deps
	$(BIN)/pytest

bench: install system-deps
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.process_bench
	$(BIN)/python -m bench.views_bench
	$(BIN)/python -m bench.functions_bench
	$(BIN)/python -m bench.export_bench

docs: install
	$(BIN)/python -c 'from iotman.settings import settings_markdown; open("docs/settings.md","w").write(settings_markdown())'

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
