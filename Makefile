# The two commands a new user needs: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
# torch (a test-only dependency) is pinned to its CPU build (2.13.0+cpu). Machines of this project's
# kind carry that wheel where pip's own configuration finds it (`pip config list`: find-links). Elsewhere
# point TORCH_INDEX at PyTorch's CPU index: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_INDEX_FLAG := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet $(TORCH_INDEX_FLAG) -c constraints.txt -e ".[test,trainer]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf out/demo
	$(VENV)/bin/flanmix build --mixture demo --output out/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/flanmix templates lint

# Re-resolve the pinned set (needs the package index).
lock:
	$(PYTHON) -m venv /tmp/flanmix-lock && /tmp/flanmix-lock/bin/pip install --quiet --upgrade pip
	/tmp/flanmix-lock/bin/pip install --dry-run --quiet $(TORCH_INDEX_FLAG) --report /tmp/flanmix-lock.json -e ".[test,trainer]"
	$(PYTHON) .ci/write_constraints.py /tmp/flanmix-lock.json > constraints.txt

clean:
	rm -rf out build dist *.egg-info
