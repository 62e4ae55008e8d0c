# AM-QADF Live. `make demo` runs the dashboard on its embedded default; `make test` runs
# every test (starting local Kafka, Redis and a MongoDB-wire server first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 5006
ADDRESS ?= 127.0.0.1

# `make docker-env` writes .env (random Redis and MongoDB passwords) for docker compose.
.PHONY: docker-env demo dashboard test unit integration browser bench lint format services-start services-stop clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  rm -rf $(VENV); apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dashboard,replay,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/panel serve dashboard/app.py dashboard/fleet.py --index app \
	  --address $(ADDRESS) --port $(PORT) --plugins dashboard.metrics_plugin $(PANEL_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -q

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

docker-env:
	@if [ -f .env ]; then echo ".env exists: kept as it is"; else \
	  umask 077; \
	  printf 'AMQADF_REDIS_PASSWORD=%s\nAMQADF_MONGO_PASSWORD=%s\n' \
	    "$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(24))')" \
	    "$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(24))')" > .env; \
	  echo "wrote .env with random passwords for Redis and MongoDB"; fi

services-start:
	services/run start

services-stop:
	services/run stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
