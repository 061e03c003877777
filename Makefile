# The two set-up commands (README): `make demo` and `make test`. Both create/refresh .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo lint test system-deps triton-server clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Runtime only (numpy, opencv-contrib-python, onnxruntime, pyzmq): what a camera box needs.
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

# Runtime + train (torch 2.14.1 CPU use, onnx export) + test extras.
$(VENV)/.test: pyproject.toml | $(PY)
	$(PIP) -e '.[train,test]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(PY) -m stream.cli run assets/demo.mp4 --print

system-deps:
	@scripts/system-deps.sh

# A real tritonserver for the Triton engine tests and `twostream bench` (engines/triton_server.py): the
# nvidia-pytriton wheel bundles tritonserver 2.51 with the python backend. Its own venv: it pins numpy<2.
TRITON_VENV := $(VENV)/tritonserver
$(TRITON_VENV)/.ready: | $(PY)
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --disable-pip-version-check nvidia-pytriton 'numpy<2' onnxruntime
	touch $@

triton-server: $(TRITON_VENV)/.ready

# Layering (import-linter contracts in pyproject.toml), no import cycle, lint (ruff), then the tests.
lint: $(VENV)/.test
	$(VENV)/bin/lint-imports
	$(PY) scripts/import_cycles.py
	$(VENV)/bin/ruff check .

test: lint system-deps triton-server
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
