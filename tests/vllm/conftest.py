"""Tests that need vLLM run in the vllm venv (`make test-vllm`, part of `make test`).

The main venv has no vllm: there these files are not collected. In a run that names vllm in
LLMOPS_TEST_ENGINES (the Makefile's vllm run does), a missing vllm is an error, never a skip.
"""

from __future__ import annotations

import importlib.util

from tests.engine_kit import ENGINE_KINDS

if importlib.util.find_spec("vllm") is None:
    if "vllm" in ENGINE_KINDS:
        raise RuntimeError(
            "LLMOPS_TEST_ENGINES names vllm but vllm is not installed in this interpreter; "
            "run `make test-vllm` (it builds .venv-vllm)"
        )
    collect_ignore_glob = ["test_*.py"]
