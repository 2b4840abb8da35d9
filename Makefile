# `make run` and `make test` are all a newcomer needs; both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
LS_VENV := .venv-labelstudio
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: run test setup bench clean

run: setup
	$(VENV)/bin/python -m core run

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed $(LS_VENV)/.installed

# A measurement, not a test: prints a table and a JSON line (see bench/README.md).
bench: setup
	$(VENV)/bin/python -m bench.run_engine $(BENCH_ARGS)

# Reinstall only when the requirements change.
$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Prompter needs Python 3.11 or newer"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements.txt
	touch $@

$(LS_VENV)/.installed: requirements-labelstudio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-labelstudio.txt
	touch $@

clean:
	rm -rf $(VENV) $(LS_VENV)
