# Plain entry points. Every target is idempotent.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
# Caches stay inside the repository (ignored by git), never in $HOME.
export ANNY_CACHE_DIR := $(CURDIR)/.cache/anny
export BLENDER_USER_CONFIG := $(CURDIR)/.cache/blender/config
export BLENDER_USER_SCRIPTS := $(CURDIR)/.cache/blender/scripts
export BLENDER_USER_EXTENSIONS := $(CURDIR)/.cache/blender/extensions
export MESA_SHADER_CACHE_DIR := $(CURDIR)/.cache/mesa
export XDG_CACHE_HOME := $(CURDIR)/.cache/xdg

.PHONY: setup test demo info clean-venv

$(STAMP): pyproject.toml Makefile
	@bash scripts/find_python311.sh > /dev/null
	@test -x $(PY) || $$(bash scripts/find_python311.sh) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools
	# torch first, pinned, so no dependency can pull a CUDA build
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	@mkdir -p .cache/anny .cache/blender .cache/mesa .cache/xdg
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

info: setup
	$(VENV)/bin/s3d info

clean-venv:
	rm -rf $(VENV)
