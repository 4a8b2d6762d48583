# The two commands a new user needs: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
# torch (a test-only dependency) is pinned to its CPU build, which PyTorch publishes on its own index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet --extra-index-url $(TORCH_INDEX) -c constraints.txt -e ".[test,trainer]"
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
	/tmp/flanmix-lock/bin/pip install --dry-run --quiet --extra-index-url $(TORCH_INDEX) --report /tmp/flanmix-lock.json -e ".[test,trainer]"
	$(PYTHON) .ci/write_constraints.py /tmp/flanmix-lock.json > constraints.txt

clean:
	rm -rf out build dist *.egg-info
