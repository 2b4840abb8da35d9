# `make run` and `make test` are all a newcomer needs; both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
LS_VENV := .venv-labelstudio
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: run test setup chromium postgresql bench bench-predict bench-replace bench-first-result bench-backend bench-batch bench-workers bench-large-run bench-startup clean

run: setup
	$(VENV)/bin/python -m core run

# Two workers, one per core: the suite waits on servers, browsers and subprocesses as well as it
# computes, so it takes about 13 minutes instead of 20 (a third worker adds a Label Studio server
# and contention). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: setup chromium postgresql
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

setup: $(VENV)/.installed $(LS_VENV)/.installed

# Measurements, not tests: each prints a table and a JSON line (see bench/README.md). One after the
# other, never at once: they would compete for the CPUs.
bench: setup chromium postgresql
	$(VENV)/bin/python -m bench.run_engine $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.predict $(PREDICT_ARGS)
	$(VENV)/bin/python -m bench.replace $(REPLACE_ARGS)
	$(VENV)/bin/python -m bench.first_result $(FIRST_RESULT_ARGS)
	$(VENV)/bin/python -m bench.backend $(BACKEND_ARGS)
	$(VENV)/bin/python -m bench.batch $(BATCH_ARGS)
	$(VENV)/bin/python -m bench.workers $(WORKERS_ARGS)
	$(VENV)/bin/python -m bench.large_run $(LARGE_RUN_ARGS)
	$(VENV)/bin/python -m bench.startup $(STARTUP_ARGS)

bench-predict: setup
	$(VENV)/bin/python -m bench.predict $(PREDICT_ARGS)

bench-replace: setup
	$(VENV)/bin/python -m bench.replace $(REPLACE_ARGS)

bench-first-result: setup chromium
	$(VENV)/bin/python -m bench.first_result $(FIRST_RESULT_ARGS)

bench-backend: setup
	$(VENV)/bin/python -m bench.backend $(BACKEND_ARGS)

bench-batch: setup
	$(VENV)/bin/python -m bench.batch $(BATCH_ARGS)

# Its own PostgreSQL server (the store workers share) from the distribution's binaries, like the tests'.
bench-workers: setup postgresql
	$(VENV)/bin/python -m bench.workers $(WORKERS_ARGS)

bench-large-run: setup
	$(VENV)/bin/python -m bench.large_run $(LARGE_RUN_ARGS)

bench-startup: setup
	$(VENV)/bin/python -m bench.startup $(STARTUP_ARGS)

# Reinstall only when the requirements change. The constraints hold every package, the indirect ones
# included, at the versions the suite passed with.
$(VENV)/.installed: requirements.txt constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Prompter needs Python 3.11 or newer"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements.txt -c constraints.txt
	touch $@

$(LS_VENV)/.installed: requirements-labelstudio.txt constraints-labelstudio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-labelstudio.txt -c constraints-labelstudio.txt
	touch $@

# The browser tests drive the distribution's Chromium (Playwright cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| { echo "Install Chromium (Debian: apt-get install chromium) for the browser tests"; exit 1; }

# The store's and the run engine's tests run on PostgreSQL too, against a server they start themselves
# from the distribution's binaries (tests/postgres.py); `make run` needs none.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
		|| { echo "Install PostgreSQL's server (Debian: apt-get install postgresql) for the store's tests"; exit 1; }

clean:
	rm -rf $(VENV) $(LS_VENV)
