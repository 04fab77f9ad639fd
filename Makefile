# Two commands after cloning:  `make demo`  (the main job, offline)  and  `make test`.
# Both create ./.venv on first use. torch is installed first from its CPU build so that pip
# does not pull a multi-GB CUDA build; override TORCH_INSTALL for your machine, e.g.
#   make demo TORCH_INSTALL="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_INSTALL ?= torch==2.13.0
DEMO_OUT ?= demo_output
STAMP := $(VENV)/.installed

.PHONY: demo test benchmarks clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet $(TORCH_INSTALL)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gpm-astro demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
