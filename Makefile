# llmops-streams: `make up` runs the platform with demo traffic, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: up test venv lint typecheck bench schemas clean

up: $(STAMP)                     ## set up, then run the platform on its embedded default with demo traffic
	$(VENV)/bin/llmops up --demo

test: $(STAMP)                   ## set up, then run lint, types and the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy schemas llmops services streams
	$(PY) -m pytest -q -p no:cacheprovider

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing pinned dependencies (first time: ~2 min)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip==26.3
	$(PIP) install -e '.[dev]'
	# faust-streaming pins click<8.4, transformers' huggingface-hub needs click>=8.4.2;
	# faust's CLI is unused (workers start programmatically), so install it without deps.
	$(PIP) install --no-deps faust-streaming==0.15.3
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy schemas llmops services streams

schemas: $(STAMP)                ## re-export schemas/json from the pydantic models
	$(PY) -m schemas.export

bench: $(STAMP)
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) .llmops build *.egg-info
