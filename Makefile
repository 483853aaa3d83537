# One command each: `make run`, `make demo-sso`, `make test`, `make fmt`, `make bench`, `make fuzz`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo-sso test lint fmt bench bench-quick fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A scratch copy of the demo, so that the tour never edits the repository's files.
run: $(STAMP)
	@demo=$$(mktemp -d "$${TMPDIR:-/tmp}/jitprov-demo.XXXXXX") \
	  && cp -R examples/demo/. "$$demo/" && rm -f "$$demo"/*.db* \
	  && echo "jitprov on a scratch copy of the demo: $$demo" \
	  && cd "$$demo" && "$(CURDIR)/$(BIN)/jitprov"

# Single sign-on in a browser: two test IdPs, `jitprov serve` and a demo application on
# loopback (docs/sso.md); open the address it prints. The SAML IdP needs xmlsec1.
demo-sso: $(STAMP)
	$(BIN)/python -m examples.sso

lint: $(STAMP)
	$(BIN)/ruff check rules engine tui tests bench
	$(BIN)/ruff format --check rules engine tui tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

fmt: $(STAMP)
	$(BIN)/ruff format rules engine tui tests bench
	$(BIN)/ruff check --fix rules engine tui tests bench

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

# Coverage-guided fuzzing (tests/fuzz, docs/testing.md): every target FUZZ_SECONDS each,
# or only FUZZ_TARGETS (e.g. `make fuzz FUZZ_TARGETS=saml FUZZ_SECONDS=600`); exits 1 on
# a new finding, saved under tests/fuzz/regressions/.
FUZZ_STAMP   := $(VENV)/.installed-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
