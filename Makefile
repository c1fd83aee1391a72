# The two commands a new user runs first: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WS ?= workspace/demo

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

# torch is pinned first (constraints.txt): an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	bash scripts/demo.sh $(WS)

bench: install
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) workspace bench/_work .pytest_cache
