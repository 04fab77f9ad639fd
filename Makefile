# Two commands after cloning:  `make demo`  (the main job, offline)  and  `make test`.
# Both create ./.venv on first use. torch is installed first, by tools/install_torch.sh, so that
# pip does not pull a multi-GB CUDA build through a bare requirement: the CPU build where no
# NVIDIA GPU is visible (nvidia-smi absent or failing), the CUDA build where one is. It prints
# which build it chose and why. Overrides:
#   make demo TORCH_BUILD=cpu          # or cuda; default auto
#   make demo TORCH_CPU_INDEX=URL      # a mirror of https://download.pytorch.org/whl/cpu
#   make demo TORCH_INSTALL="torch==2.13.0 --index-url URL"   # exact pip arguments
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_BUILD ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INSTALL ?=
DEMO_OUT ?= demo_output
DEMO_ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
TORCH_ENV = TORCH_BUILD="$(TORCH_BUILD)" TORCH_CPU_INDEX="$(TORCH_CPU_INDEX)" \
	TORCH_INSTALL="$(TORCH_INSTALL)"

.PHONY: demo test benchmarks docs clean-venv torch-choice

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(TORCH_ENV) bash tools/install_torch.sh $(VENV)/bin/python $(TORCH_VERSION)
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e ".[test,docs]"
	touch $(DOCS_STAMP)

# Which torch build `make` would install here, and why (installs nothing).
torch-choice:
	@$(TORCH_ENV) bash tools/install_torch.sh --dry-run $(PYTHON) $(TORCH_VERSION)

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
