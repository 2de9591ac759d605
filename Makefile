# The two quick-start commands: `make demo` (set up + run the live pipeline on the CPU) and
# `make test` (set up + run the tests). Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip
STAMP_DEMO := $(VENV)/.demo-installed
STAMP_TEST := $(VENV)/.test-installed

.PHONY: demo test bench device-wheels photos clean

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

# Real photographs for `spike-train fit --data reds-like` (docs/training.md): Debian's wallpaper
# packages (apt-get needs root) and scikit-image's images, collected into runs/photos (never committed),
# plus 8 held-out REDS-like clips in runs/reds_like_val for `spike-train eval`.
PHOTO_PACKAGES := gnome-backgrounds mate-backgrounds ukui-wallpapers plasma-workspace-wallpapers lomiri-wallpapers
photos: $(STAMP_TEST)
	apt-get install -y -q $(PHOTO_PACKAGES)
	$(VENV)/bin/spike-train data --out runs/photos --short-side 1080 --val-clips 8 --val-out runs/reds_like_val

clean:
	rm -rf $(VENV) out
