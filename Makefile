# isoproof: the two commands that work on a fresh machine are `make test` and `make demo`.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.isoproof-installed
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK = 1
export MPLBACKEND = Agg

.PHONY: all setup web test proofs demo bench mutation lint clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned, so no extra can pull a newer CUDA build.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]" "$(TORCH_SPEC)"
	touch $(STAMP)

setup: $(STAMP)

# The browser runtime (Debian's chromium, node, the npm packages pinned in exporters/web): see
# exporters/web/install.sh. Idempotent; as root it apt-installs what is missing; CI=true fails if
# the browser tests could not run, elsewhere they skip with the reason.
web:
	bash exporters/web/install.sh

test: $(STAMP) web
	$(PY) -m ruff check isoproof proofs exporters tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

proofs: $(STAMP)
	$(PY) -m proofs --json out/proofs.json --junit out/proofs.xml

demo: $(STAMP)
	$(PY) -m isoproof demo

bench: $(STAMP)
	$(PY) -m benchmarks

# single realistic bugs, one at a time, on a copy of the tree (minutes; not part of `make test`)
mutation: $(STAMP)
	$(PY) -m benchmarks.mutation

lint: $(STAMP)
	$(PY) -m ruff check isoproof proofs exporters tests benchmarks
	$(PY) -m ruff format --check isoproof proofs exporters tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis out
