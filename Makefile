# speko_bridge: every target sets itself up (.venv) on first use; a fresh clone needs only Python >= 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
RUN_STAMP := $(VENV)/.installed-run
HOST   ?= 127.0.0.1
PORT   ?= 8000
TEST_WORKERS ?= 3

CHROMIUM := /usr/bin/chromium
REDIS    := /usr/bin/redis-server
NPM      := /usr/bin/npm

.PHONY: run test bench bench-stores bench-smoke soak soak-overload openapi protocol-doc mutants clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# `make run` installs what serving needs (and the Python SDK's one extra, aiohttp, is among it);
# every other target installs the test toolchain too (pytest, Playwright, schemathesis,
# matplotlib...), which is several times larger.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

# mutmut lives in its own extra (`mutants`): `make run` and `make test` never install it.
MUTANTS_STAMP := $(VENV)/.installed-mutants

$(MUTANTS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,mutants]'
	touch $(MUTANTS_STAMP)

# System packages the tests drive for real: Debian's chromium for the browser test
# (Playwright's own browser download does not work offline) and redis-server for the Redis
# store and the two-replica tests (the tests start and stop their own servers on free ports).
# Installed with apt when missing; as root, or through sudo.
$(CHROMIUM) $(REDIS) &:
	@echo "make test: installing chromium (the browser tests) and redis-server (the Redis store tests) with apt-get"
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium redis-server >/dev/null

# Node.js and npm for the OpenAI-compatible endpoint's Node client test (the test installs
# @openai/agents-realtime from the npm registry into a temp dir).
$(NPM):
	@echo "make test: installing nodejs and npm (the Node client and TypeScript tests fetch their packages from npm) with apt-get"
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null

## run: serve the bridge on $(HOST):$(PORT) in dev mode (generated keys in .speko/, simulators for
##      providers without a key); e.g. `make run PORT=8001`, `make run HOST=0.0.0.0`
run: $(RUN_STAMP)
	SPEKO_DEV=$${SPEKO_DEV:-1} $(BIN)/speko-bridge serve --host $(HOST) --port $(PORT)

## test: run every test on $(TEST_WORKERS) pytest-xdist workers (default 3: most tests wait on real
##       time, a microphone played at its pace, so three keep two cores busy), then alone the
##       `solo` ones (the benchmark smoke runs, which measure the machine);
##       installs the test extra into .venv and, when missing, chromium, redis-server, nodejs
##       and npm with apt-get (as root or through sudo). TEST_WORKERS=0: one after another.
test: $(STAMP) $(CHROMIUM) $(REDIS) $(NPM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not solo"
	$(BIN)/python -m pytest -m solo

## bench: the bridge against its floor (CPU, turn latency, capacity, memory, connect, mint,
##        overload, micro), ~10 min with the stores below;
##        table with a verdict per target, results and plots in bench/results/; then SQLite
##        versus Redis (consume latency, mint rps) and the SIGTERM drain (bench/stores.py)
bench: $(STAMP) $(REDIS)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/stores.py

## bench-stores: only the SQLite/Redis comparison and the drain (~30 s)
bench-stores: $(STAMP) $(REDIS)
	$(BIN)/python bench/stores.py

## soak: the bridge's sustainable capacity (measured first, ~1.5 min) streaming for 10 minutes;
##       prints frames lost and reordered (goal 0) and the RSS growth (goal < 5%);
##       bench/results/soak.json. SESSIONS=200 soaks at a fixed count instead
SESSIONS ?= auto
soak: $(STAMP)
	$(BIN)/python bench/soak.py --sessions $(SESSIONS) --seconds 600

## soak-overload: offered twice that capacity for 10 minutes (the overload rule refuses the
##       excess): admitted sessions lose nothing, RSS bounded; bench/results/soak_overload.json
soak-overload: $(STAMP)
	$(BIN)/python bench/soak.py --sessions $(SESSIONS) --factor 2 --seconds 600

## bench-smoke: every benchmark at small size (< 1 min); checks the harness and that no frame is lost
bench-smoke: $(STAMP) $(REDIS)
	$(BIN)/python bench/run.py --smoke --out $${TMPDIR:-/tmp}/speko-bench-smoke
	$(BIN)/python bench/stores.py --smoke --out $${TMPDIR:-/tmp}/speko-bench-smoke

## mutants: mutation testing (mutmut) of tokens, stores, resampler, provider and client codecs
##          against their fast tests, one module at a time, 2 workers, nice 10; ~25 min on
##          2 cores. Prints per module: score, target, survivors (docs/testing.md). The
##          modules are `only_mutate` in pyproject.toml; mutmut works in mutants/.
# The test -> function map (mutants/mutmut-stats.json) is collected afresh on every run:
# mutmut 3.8 updates it incrementally for new tests only, so a function that moved to a new
# module kept no tests and all its mutants read "no test calls it" (seen after issue 18's
# splits). Collecting it costs well under a minute; cached verdicts are still reused.
mutants: $(MUTANTS_STAMP) $(REDIS)
	@mkdir -p mutants; rm -f mutants/mutmut-stats.json; for module in $$($(BIN)/python tools/mutants_report.py modules); do \
		echo "mutmut: $$module ($$(date +%T))"; log=mutants/run-$$module.log; \
		nice -n 10 $(BIN)/mutmut run --max-children 2 "$$module.*" > $$log 2>&1 \
			|| { tail -n 40 $$log; echo "mutmut failed on $$module (log: $$log)"; exit 1; }; \
	done
	$(BIN)/python tools/mutants_report.py

## openapi: regenerate openapi.yaml from the msgspec types
openapi: $(STAMP)
	$(BIN)/python -m speko_bridge.openapi > openapi.yaml

## protocol-doc: regenerate docs/protocol.md from the msgspec types and speko_bridge/protocol_text.py
protocol-doc: $(STAMP)
	$(BIN)/python -m speko_bridge.protocol_doc > docs/protocol.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis mutants
