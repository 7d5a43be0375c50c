# Two entry points: `make demo` and `make test`; both build .venv from nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,viewer]"
	$(PY) -c "import cv2, albumentations, segment_anything, torch, torchvision, napari"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m synthfm.cli.demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "slow or not slow"

clean:
	rm -rf $(VENV) demo_out
