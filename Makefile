# Two commands after cloning:  `make demo`  (the main job, offline)  and  `make test`.
# Both create ./.venv on first use. torch is installed first, pinned, so that pip does not pull
# a multi-GB CUDA build through a bare requirement. Where the pinned release is not a CPU build
# (PyPI's Linux wheels carry CUDA), override TORCH_INSTALL, e.g.
#   make demo TORCH_INSTALL="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_INSTALL ?= torch==2.13.0
DEMO_OUT ?= demo_output
DEMO_ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test benchmarks docs clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet $(TORCH_INSTALL)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e ".[test,docs]"
	touch $(DOCS_STAMP)

# The whole study on the embedded mock sky; e.g. make demo DEMO_ARGS="--quick --n-galaxies 400"
demo: $(STAMP)
	$(VENV)/bin/gpm-astro demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

docs: $(DOCS_STAMP)
	$(VENV)/bin/python -m sphinx -b html -q docs docs/_build/html
	@echo "documentation: docs/_build/html/index.html"

clean-venv:
	rm -rf $(VENV)
