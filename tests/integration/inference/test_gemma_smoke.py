"""Gemma-3-270m through the transformers engine. Collected only on request (preparing the
model takes ~75 s once), so `make test` stays in its time budget: `make test-gemma`, or

    LLMOPS_TEST_GEMMA=1 .venv/bin/pytest tests/integration/inference/test_gemma_smoke.py

It uses (and prepares if needed) the model under LLMOPS_DATA_DIR, default `.llmops`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.models import GEMMA_270M, load_model, prepare_model
from tests.engine_kit import assert_well_formed, collect, request

pytestmark = pytest.mark.integration


async def test_gemma_continues_a_sentence_sensibly() -> None:
    data_dir = Path(os.environ.get("LLMOPS_DATA_DIR", ".llmops"))
    prepare_model(GEMMA_270M, data_dir)
    engine = TransformersEngine(
        GEMMA_270M,
        lambda: load_model(GEMMA_270M, data_dir),
        TransformersEngineConfig(max_model_len=256, kv_cache_tokens=2048),
    )
    await engine.start()
    try:
        prompt = "The capital of France is"
        result = await collect(engine, request(prompt, max_tokens=12))
        stop = result.text[len(result.text) // 2 :][:3]
        stopped = await collect(engine, request(prompt, max_tokens=12, stop=(stop,)))
    finally:
        await engine.stop()
    assert_well_formed(result.chunks)
    assert result.final.output_tokens == 12
    # Measured: 'A. Paris\nB. Bordeaux\nC. Bordeaux\n' (plain rendering ends the prompt with \n)
    assert "Paris" in result.text
    assert stopped.final.finish == "stop"
    assert stopped.text == result.text[: result.text.find(stop)]
