# `make demo`: fresh venv, install, run the web-text pipeline on the embedded sample.
# `make test`: fresh venv, install with test extras, lint (ruff), run the whole test suite (what .ci/run calls) on
# every core (pytest-xdist; `worksteal` moves queued tests to an idle worker, so one long test does not hold the end).
PYTHON ?= python3
VENV ?= .venv

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/python -m compileall -q cleaners pipelines tokenizer shards train  # as pip does for a regular install
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/wudao demo --output wudao-demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal

.PHONY: install demo test
