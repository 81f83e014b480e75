# The two commands of the README: `make demo` and `make test`.
# Each creates ./.venv with the pinned versions (constraints.txt) the first time it runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.drx-installed

.PHONY: demo test test-fast install clean

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	# mace-torch pins e3nn==0.4.4 against sevenn's >=0.5; its other requirements come with setup.py
	$(PY) -m pip install --quiet --no-deps -c constraints.txt mace-torch
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/drx demo

test: $(STAMP)
	$(PY) -m pytest -q -ra tests

# The fast set only: skips tests marked slow (CI runs everything through `make test`).
test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow" tests

clean:
	rm -rf $(VENV) drx_demo .pytest_cache
