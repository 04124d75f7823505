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

.PHONY: setup test demo info dist clean-venv

$(STAMP): pyproject.toml Makefile
	@bash scripts/find_python311.sh > /dev/null
	@test -x $(PY) || $$(bash scripts/find_python311.sh) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools
	# torch first, pinned, so no dependency can pull a CUDA build
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev,cluster]'
	@mkdir -p .cache/anny .cache/blender .cache/mesa .cache/xdg
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

info: setup
	$(VENV)/bin/s3d info

# The example sketch (drawn as strokes by examples/make_example_sketch.py) -> out/demo/
DEMO_INPUT := examples/head_front.json
DEMO_WEIGHTS := weights/mask2triplane_lite weights/sketch2mask_lite
demo: setup
	@for w in $(DEMO_WEIGHTS); do for ext in safetensors json; do \
	  test -f $$w.$$ext || { echo "make demo: missing weights file $$w.$$ext; train the lite weights (docs/models.md) or restore weights/ from git" >&2; exit 1; }; \
	done; done
	$(VENV)/bin/s3d generate $(DEMO_INPUT) --out out/demo --format ply,glb,obj
	@echo "demo: open out/demo/mesh.ply (or mesh.glb) in Blender; renders in out/demo/views/, the mask in out/demo/mask_color.png"

# The installable Blender extension zip (add-on + backend source + lite weights) -> dist/
dist: setup
	$(PY) build_addon.py

clean-venv:
	rm -rf $(VENV)
