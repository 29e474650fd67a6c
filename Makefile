# make lab   opens the lessons in JupyterLab.
# make test  runs ruff and every test (pytest, the notebooks under nbval included).
# Both create .venv with $(PYTHON) (3.10 or newer) and install what they need; a second run only checks.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test bench notebooks mirror live-copies

# Jupyter refuses to run as root unless told; containers and cloud workspaces often run everything as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev  # the API under load (wrk, on 127.0.0.1) and the cost of a token; see the README
	$(BIN)/python tools/bench.py --compare

notebooks: $(VENV)/.installed-lab  # after editing a notebook: re-run them all and save their outputs
	$(BIN)/python tools/notebook_tools.py run

mirror: $(VENV)/.installed-lab  # copy lesson_code/ into the notebooks' marked cells and re-run those notebooks
	$(BIN)/python tools/notebook_tools.py mirror

live-copies: $(VENV)/.installed-lab  # output-free copies for live coding, in notebooks-live/
	$(BIN)/python tools/notebook_tools.py strip notebooks-live

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed, $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.12 (say)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-lab: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed-lab
