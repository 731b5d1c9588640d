# `make run`: the demo on the embedded broker. `make test`: the whole suite.
# Both create the virtualenv and install what they need; the harness starts the broker,
# Redis (unless one answers at CRONBUS_REDIS_URL) and the development API, and stops them.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install lint unit test run clean chaos bench-console bench-ingest bench-jobs bench-latency bench-priority bench-schedules prometheus nginx kcat chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check streams agents clients families tests bench chaos

unit: install
	$(BIN)/python -m pytest tests/unit

# Prometheus (Debian's package) for the dashboard test; skipped when one is on PATH. Only the
# binary is used: the test starts it on a free port, so the package's own service never matters.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# a Debian package, installed (a stale package index is refreshed once if that fails)
apt_install = export DEBIAN_FRONTEND=noninteractive; \
  $(SUDO) apt-get install -y --no-install-recommends $(1) \
  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(1); }
prometheus:
	@command -v prometheus >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no prometheus and no apt-get: install Prometheus yourself" >&2; exit 0; }; \
	  { $(call apt_install,prometheus); } \
	  || echo "apt-get could not install prometheus; the dashboard test will fail" >&2; }

# kcat (Debian's) for the README's dead-letter replay pipe, run by a test over confluent-kafka's
# librdkafka (Debian's own cannot talk to the test broker); skipped where it cannot be installed
kcat:
	@command -v kcat >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no kcat and no apt-get: its test is skipped" >&2; exit 0; }; \
	  { $(call apt_install,kcat); } \
	  || echo "apt-get could not install kcat; its test is skipped" >&2; }

# Debian's chromium for the console's browser tests (Playwright drives it: no `playwright install`)
chromium:
	@command -v chromium >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no chromium and no apt-get: install chromium yourself" >&2; exit 0; }; \
	  { $(call apt_install,chromium); } \
	  || echo "apt-get could not install chromium; the console's browser test will fail" >&2; }

test: lint prometheus kcat chromium
	$(BIN)/python -m pytest -n 3 --dist worksteal

run: install
	$(BIN)/cronbus demo

# the fault suite (chaos/): kill storms, outages and slow answers on the real broker, Redis and
# development API; one JSON line per scenario, then a summary; non-zero if any failed.
# PROFILE=ci: the same scenarios and assertions, shorter (what .ci/run runs after `make test`)
chaos: install
	$(BIN)/python -m chaos --profile $${PROFILE:-full}

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info .cronbus-data

# nginx (Debian's nginx-light) is the downstream both cronbus and the BullMQ peer call
nginx:
	@command -v nginx >/dev/null || { \
	  $(call apt_install,nginx-light); }

bench-jobs: install nginx
	$(BIN)/python bench/jobs.py --jobs $${JOBS:-20000} --concurrency $${CONCURRENCY:-50} --processes $${PROCESSES:-2} --peer-dir $${PEER_DIR:-../shared/bench}

# RATE events/s for DURATION_S seconds, one at a time, each one job and one call; the BullMQ peer's latency beside it
bench-latency: install nginx
	$(BIN)/python bench/latency.py --rate $${RATE:-1000} --seconds $${DURATION_S:-30} --concurrency $${CONCURRENCY:-50} --peer-dir $${PEER_DIR:-../shared/bench}

bench-priority: install nginx
	$(BIN)/python bench/priority.py --backlog $${BACKLOG:-50000} --high $${HIGH:-100} --concurrency $${CONCURRENCY:-50} --processes $${PROCESSES:-1} --peer-dir $${PEER_DIR:-../shared/bench}

bench-ingest: install
	$(BIN)/python bench/ingest.py --events $${EVENTS:-200000} --tenants $${TENANTS:-1000}

bench-console: install chromium
	$(BIN)/python bench/console.py --jobs $${JOBS:-10000} --schedules $${SCHEDULES:-1000} --runs $${RUNS:-5}

bench-schedules: install
	$(BIN)/python bench/schedules.py --schedules $${SCHEDULES:-100000} --minutes $${MINUTES:-2}
