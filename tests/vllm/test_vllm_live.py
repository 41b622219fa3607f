"""The vLLM engine on a real model, beyond the shared contract: greedy agreement with the
transformers engine on the same weights and chat template, LoRA adapters per request, the
pool's options reaching vLLM, a dying engine core. Runs in the vllm venv only (conftest.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmops.config import VllmPool
from services.inference.engines.base import EngineError, GenerationRequest
from services.inference.engines.factory import create_engine
from services.inference.engines.streaming import encode_prompt
from services.inference.engines.text import render_plain
from services.inference.engines.transformers_engine import TransformersEngine
from services.inference.engines.vllm_engine import VllmEngine
from services.inference.models import load_model
from tests.engine_kit import TINY_CONFIG, TINY_VLLM, collect, make_engine, request, tiny_model_dir

pytestmark = pytest.mark.integration

MAX_MODEL_LEN = 128
PREFIX_TOKENS = 8
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
PROMPTS = (
    "The capital of France is",
    "A stream of events flows through the broker",
    "Hello world! Numbers like 42 appear",
    "Ask a question, get an answer",
    "The quick brown fox",
    "Kafka consumers commit offsets after",
)


def write_lora(directory: Path, scale: float, seed: int) -> Path:
    """A rank-8 LoRA adapter in PEFT's file layout for the tiny Llama's q and v projections.
    With scale 0 its B matrices are zero: the adapted model equals the base model."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(2):
        for module in ("q_proj", "v_proj"):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(8, 128, generator=generator) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(128, 8, generator=generator) * scale
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "base_model_name_or_path": "tiny-random",
    }
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a chat template added: both engines must render it the same way."""
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("chat") / "tiny-chat"
    shutil.copytree(tiny_model_dir(), target)
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("loras")
    return {
        "shift": str(write_lora(root / "shift", scale=2.0, seed=1)),
        "zero": str(write_lora(root / "zero", scale=0.0, seed=2)),
    }


@pytest.fixture(scope="module")
async def vllm_engine(
    chat_model_dir: Path, adapters: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VllmEngine]:
    """Built the way the platform builds it: a pool config through the factory."""
    options = TINY_VLLM.model_copy(
        update={
            "max_model_len": MAX_MODEL_LEN,
            "enable_lora": True,
            "max_loras": 2,
            "max_lora_rank": 8,
            "lora_paths": adapters,
        }
    )
    pool = VllmPool(
        name="vllm-cpu",
        model=str(chat_model_dir),
        capacity=8,
        adapters=sorted(adapters),
        vllm=options,
    )
    engine = create_engine(pool, tmp_path_factory.mktemp("data"))
    assert isinstance(engine, VllmEngine)
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture(scope="module")
async def hf_engine(
    chat_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TransformersEngine]:
    """Our transformers engine on the very files vLLM loads."""
    path, data_dir = str(chat_model_dir), tmp_path_factory.mktemp("hf")
    engine = TransformersEngine("tiny-random", lambda: load_model(path, data_dir), TINY_CONFIG)
    await engine.start()
    yield engine
    await engine.stop()


async def test_pool_options_reach_vllm(vllm_engine: VllmEngine) -> None:
    config = vllm_engine.vllm_config
    assert config is not None
    assert config.model_config.max_model_len == MAX_MODEL_LEN
    assert str(config.model_config.dtype) == "torch.float32"
    assert config.model_config.enforce_eager is True
    assert config.scheduler_config.max_num_seqs == 8  # the pool's capacity
    assert config.parallel_config.tensor_parallel_size == 1
    assert config.parallel_config.pipeline_parallel_size == 1
    assert config.lora_config is not None
    assert (config.lora_config.max_loras, config.lora_config.max_lora_rank) == (2, 8)


async def test_the_chat_template_renders_the_prompt(
    vllm_engine: VllmEngine, chat_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir, local_files_only=True)
    messages = (("system", "Be brief."), ("user", "Tell me about the broker"))
    ids = encode_prompt(tokenizer, messages)
    assert tokenizer.decode(ids).startswith("<s>system: Be brief.</s>")  # the template ran
    assert len(ids) > len(tokenizer(render_plain(messages))["input_ids"])
    req = GenerationRequest("chat-1", messages, max_tokens=3)
    result = await collect(vllm_engine, req)
    assert result.final.input_tokens == len(ids)
    assert result.final.output_tokens == 3


async def test_greedy_agrees_with_transformers_on_a_short_prefix(
    vllm_engine: VllmEngine, hf_engine: TransformersEngine
) -> None:
    for prompt in PROMPTS:
        ours = await collect(hf_engine, request(prompt, max_tokens=PREFIX_TOKENS))
        theirs = await collect(vllm_engine, request(prompt, max_tokens=PREFIX_TOKENS))
        assert theirs.final.input_tokens == ours.final.input_tokens, prompt  # same rendering
        assert (theirs.text, theirs.final.finish) == (ours.text, ours.final.finish), prompt
        assert theirs.final.output_tokens == ours.final.output_tokens, prompt


async def test_lora_adapters_apply_per_request(vllm_engine: VllmEngine) -> None:
    prompt = "Tell me about the broker"
    base = await collect(vllm_engine, request(prompt, max_tokens=12))
    shifted = await collect(vllm_engine, request(prompt, max_tokens=12, adapter="shift"))
    zero = await collect(vllm_engine, request(prompt, max_tokens=12, adapter="zero"))
    assert shifted.text != base.text  # the adapter's weights were applied
    assert zero.text == base.text  # a zero adapter changes nothing: same base weights
    # One batch mixing adapters gives each request what it gets alone.
    mixed = await asyncio.gather(
        *(
            collect(vllm_engine, request(prompt, max_tokens=12, adapter=adapter))
            for adapter in (None, "shift", "zero", "shift", None)
        )
    )
    assert [r.text for r in mixed] == [base.text, shifted.text, base.text, shifted.text, base.text]


async def test_unknown_adapter_fails_only_that_request(vllm_engine: VllmEngine) -> None:
    failed = vllm_engine.stats().failed
    with pytest.raises(EngineError, match="'nope' is not served"):
        await collect(vllm_engine, request(max_tokens=2, adapter="nope"))
    assert vllm_engine.stats().failed == failed + 1
    assert (await collect(vllm_engine, request(max_tokens=2))).final.output_tokens == 2


async def test_max_model_len_bounds_prompt_and_output(vllm_engine: VllmEngine) -> None:
    with pytest.raises(EngineError, match="prompt has"):
        await collect(vllm_engine, request("broker " * MAX_MODEL_LEN, max_tokens=2))
    result = await collect(vllm_engine, request("a much longer prompt " * 4, max_tokens=10_000))
    assert result.final.finish == "length"  # this prompt's greedy output never hits EOS
    assert result.final.output_tokens == MAX_MODEL_LEN - result.final.input_tokens
    assert vllm_engine.stats().extra["healthy"] == 1.0


async def test_a_dead_engine_core_fails_requests_and_reports_unhealthy() -> None:
    """kill -9 vLLM's engine-core process mid-stream: the stream fails with EngineError (the
    consumer answers it with an error result), later requests too, and health drops."""
    import psutil

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    engine = make_engine("vllm")
    await engine.start()
    try:
        cores = [child for child in me.children(recursive=True) if child.pid not in before]
        assert cores, "vLLM runs its engine core in a child process"
        stream = engine.generate(request("a long answer please", max_tokens=400))
        assert (await anext(stream)).finish is None
        for core in cores:
            core.kill()
        with pytest.raises(EngineError, match="vllm failed the request"):
            async for _ in stream:
                pass
        assert engine.stats().extra["healthy"] == 0.0
        assert engine.stats().failed == 1
        with pytest.raises(EngineError):
            await collect(engine, request(max_tokens=2))
    finally:
        await engine.stop()
