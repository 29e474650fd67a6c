# make lab    opens the lessons in JupyterLab.
# make check  says whether this laptop is ready for the workshop (run it the day before; offline once installed).
# make test   runs ruff and every test (pytest, the notebooks under nbval included).
# make kit    builds kit/: the lessons and their wheels for every common laptop, for a room with no network.
# lab, check and test create .venv with $(PYTHON) (3.10 or newer) and install what they need; a second run only
# checks. With an offline kit here (kit/wheels, or ../wheels when this is the kit's copy), lab and check install
# from its wheels alone, with no network: see docs/offline-kit.md.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline kit's wheelhouse, when there is one; make lab KIT_WHEELS= installs from PyPI instead.
KIT_WHEELS ?= $(patsubst %/kit.json,%,$(firstword $(wildcard kit/wheels/kit.json ../wheels/kit.json)))
KIT_ONLY := $(if $(KIT_WHEELS),--no-index --find-links $(KIT_WHEELS))
KIT_FIRST := $(if $(KIT_WHEELS),--find-links $(KIT_WHEELS))
# Standard-library tools run with the venv's Python when there is one, else with $(PYTHON).
TOOL_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
KIT_ARGS ?=
NO_NETWORK := (no network? docs/offline-kit.md says how to install from an offline kit)
NO_KIT := $(if $(KIT_WHEELS),from the offline kit in $(KIT_WHEELS) (was it built for this platform and this requirements.txt? see docs/offline-kit.md),$(NO_NETWORK))

.PHONY: lab check test kit reset bench notebooks mirror live-copies

# Jupyter refuses to run as root unless told; containers and cloud workspaces often run everything as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

check: $(VENV)/.installed-lab  # Python, packages, a Jupyter kernel running notebook 01, a local server, the secret
	$(BIN)/python tools/setup_check.py

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

kit:  # every common laptop, Python 3.10 to 3.14; make kit KIT_ARGS='--platform this --python this' for this one
	$(TOOL_PYTHON) tools/offline_kit.py $(KIT_ARGS)

bench: $(VENV)/.installed-dev  # the API under load (wrk, on 127.0.0.1) and the cost of a token; see the README
	$(BIN)/python tools/bench.py --compare

notebooks: $(VENV)/.installed-lab  # after editing a notebook: re-run them all and save their outputs
	$(BIN)/python tools/notebook_tools.py run

mirror: $(VENV)/.installed-lab  # copy lesson_code/ into the notebooks' marked cells and re-run those notebooks
	$(BIN)/python tools/notebook_tools.py mirror

live-copies: $(VENV)/.installed-lab  # output-free copies for live coding, in notebooks-live/ (FORCE=1: replace edited ones)
	$(BIN)/python tools/notebook_tools.py strip notebooks-live $(if $(FORCE),--force)

reset:  # back to the first state: removes .jwt_secret, lesson.db, .jwt_keys/; ARGS="--notebooks --live-copies" for more
	$(TOOL_PYTHON) tools/reset.py $(ARGS)

# pip install -r $(1) into $(VENV), with pip options $(2), saying $(3) when it fails. A venv without the stamp .installed-lab was never
# finished: it is made afresh, and removed again when that first install fails or is interrupted, so a laptop
# without network (say) is left with no half-made $(VENV), and the next run starts clean.
define install
	@fresh=; \
	if [ ! -f $(VENV)/.installed-lab ]; then \
	    if [ -e $(VENV) ] && [ ! -f $(VENV)/pyvenv.cfg ]; then \
	        echo "make: $(VENV) is not a virtual environment: move it away, or run make VENV=another-folder" >&2; exit 1; \
	    fi; \
	    $(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed, $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.12 (say)")' || exit 1; \
	    fresh=1; \
	    trap 'rm -rf $(VENV); exit 130' INT TERM HUP; \
	    rm -rf $(VENV); \
	    echo "$(PYTHON) -m venv $(VENV)"; \
	    if ! $(PYTHON) -m venv $(VENV); then \
	        rm -rf $(VENV); \
	        echo "make: $(PYTHON) could not make $(VENV) (Debian and Ubuntu: apt install python3-venv); nothing left behind" >&2; \
	        exit 1; \
	    fi; \
	fi; \
	echo "$(BIN)/python -m pip install$(if $(2), $(2)) -r $(1)"; \
	if ! $(BIN)/python -m pip install --quiet --disable-pip-version-check $(2) -r $(1); then \
	    if [ -n "$$fresh" ]; then rm -rf $(VENV); fi; \
	    echo "make: pip could not install $(1) $(3)$${fresh:+; removed the half-made $(VENV)}" >&2; \
	    exit 1; \
	fi
endef

$(VENV)/.installed-lab: requirements.txt
	$(call install,requirements.txt,$(KIT_ONLY),$(NO_KIT))
	@touch $@

# The kit holds requirements.txt's wheels only: the test tools come from PyPI, the kit's wheels first.
$(VENV)/.installed-dev: requirements.txt requirements-dev.txt
	$(call install,requirements-dev.txt,$(KIT_FIRST),$(NO_NETWORK))
	@touch $@ $(VENV)/.installed-lab
