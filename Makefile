# The two quick-start commands: `make demo` (set up + run the live pipeline on the CPU) and
# `make test` (set up + run the tests). Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
STAMP_DEMO := $(VENV)/.demo-installed
STAMP_TEST := $(VENV)/.test-installed

.PHONY: demo test bench device-wheels clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_DEMO): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[video]"
	touch $@

$(STAMP_TEST): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[torch,onnx,video,train,dev]"
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(VENV)/bin/spike-edge demo --out out/demo

test: $(STAMP_TEST)
	$(VENV)/bin/ruff check --select F,E9 firmware_io edge host training tests scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP_TEST)
	$(VENV)/bin/spike-edge bench decode
	$(VENV)/bin/spike-edge bench pipeline --seconds 10

# The wheels the GPU check machine lacks (pyzmq), into .whl/ for scripts/gpu_check.sh (docs/gpu-check.md).
device-wheels:
	scripts/device_wheels.sh .whl

clean:
	rm -rf $(VENV) out
