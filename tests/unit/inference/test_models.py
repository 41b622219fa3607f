"""Model specs: the tiny in-process model, local directories, gemma preparation mechanics."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import torch
from rich.console import Console
from transformers import LlamaForCausalLM

from services.inference import models
from services.inference.models import (
    COMPLETE_MARKER,
    GEMMA_270M,
    RANDOM_LLAMA_1B,
    TINY_RANDOM,
    build_byte_pair_tokenizer,
    build_random_llama,
    build_tiny_model,
    build_tiny_tokenizer,
    llama_parameter_count,
    load_model,
    model_dir,
    prepare_model,
    random_llama_1b_config,
    save_tiny_random,
)


def test_tiny_tokenizer_round_trips_any_text() -> None:
    tokenizer = build_tiny_tokenizer()
    text = "Unseen wörds, 数字 123 and emoji 🚀"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)


def test_tiny_model_is_seeded_and_leaves_global_rng_alone() -> None:
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(99)
    expected_next = torch.rand(1)
    torch.manual_seed(99)
    first = build_tiny_model(tokenizer, seed=0)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG stream undisturbed
    second = build_tiny_model(build_tiny_tokenizer(), seed=0)
    other = build_tiny_model(tokenizer, seed=1)
    first_state, second_state = first.state_dict(), second.state_dict()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)
    assert first.config.vocab_size == len(tokenizer)
    assert first.config.head_dim == 64
    assert first.generation_config.eos_token_id == tokenizer.eos_token_id


def test_tiny_is_in_process() -> None:
    assert prepare_model(TINY_RANDOM, Path("/nonexistent")) is None
    model, tokenizer = load_model(TINY_RANDOM, Path("/nonexistent"))
    assert model.config.num_hidden_layers == 2
    assert not model.training
    assert len(tokenizer) == model.config.vocab_size


def test_byte_pair_tokenizer_has_the_size_asked_and_decodes_every_id() -> None:
    tokenizer = build_byte_pair_tokenizer(32_000)
    assert len(tokenizer) == 32_000
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    text = "Unseen wörds, 数字 123"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode())  # byte pairs merge
    assert tokenizer.convert_ids_to_tokens(31_999) is not None
    with pytest.raises(ValueError, match="byte pairs"):
        build_byte_pair_tokenizer(100)


def test_random_llama_1b_config_is_a_1b_llama() -> None:
    config = random_llama_1b_config(build_byte_pair_tokenizer(32_000))
    shape = (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
        config.vocab_size,
    )
    assert shape == (2048, 22, 32, 4, 5632, 32_000)
    assert llama_parameter_count(config) == 1_100_048_384
    with torch.device("meta"):  # the real module tree, without allocating its weights
        skeleton = LlamaForCausalLM(config)
    assert sum(p.numel() for p in skeleton.parameters()) == llama_parameter_count(config)


def test_random_llama_builds_seeded_in_the_dtype_asked() -> None:
    tokenizer = build_byte_pair_tokenizer(1024)
    config = random_llama_1b_config(tokenizer)
    config.num_hidden_layers = 1  # the 1B shape at one layer's depth: ~45M parameters
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    model = build_random_llama(config, tokenizer, seed=3, dtype=torch.bfloat16)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG stream undisturbed
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    assert sum(p.numel() for p in model.parameters()) == llama_parameter_count(config)
    again = build_random_llama(config, tokenizer, seed=3, dtype=torch.bfloat16)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)
    assert not model.training
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_random_llama_1b_is_in_process() -> None:
    assert prepare_model(RANDOM_LLAMA_1B, Path("/nonexistent")) is None


def test_saved_tiny_loads_as_a_directory_with_identical_outputs(tmp_path: Path) -> None:
    directory = save_tiny_random(tmp_path / "tiny")
    assert prepare_model(str(directory), tmp_path) == directory
    loaded, loaded_tokenizer = load_model(str(directory), tmp_path)
    tokenizer = build_tiny_tokenizer()
    original = build_tiny_model(tokenizer)
    ids = torch.tensor([tokenizer("The capital of France")["input_ids"]])
    assert loaded_tokenizer("The capital of France")["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, original(ids).logits, atol=1e-5)


def test_unknown_spec_is_an_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing is ever downloaded"):
        prepare_model("some-org/some-model", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path), tmp_path)  # a directory, but not a model


def _fake_convert(calls: list[int], fail: bool = False) -> object:
    def convert(work: Path, console: Console | None) -> None:
        calls.append(1)
        out = work / "model"
        out.mkdir()
        (out / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("conversion failed")
        (out / COMPLETE_MARKER).write_text("done\n")

    return convert


def test_gemma_preparation_is_atomic_and_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(models, "_convert_gemma", _fake_convert(calls))
    target = prepare_model(GEMMA_270M, tmp_path)
    assert target == model_dir(GEMMA_270M, tmp_path) == tmp_path / "models" / GEMMA_270M
    assert (target / COMPLETE_MARKER).is_file()
    assert prepare_model(GEMMA_270M, tmp_path) == target
    assert calls == [1]  # the second call found it prepared
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{GEMMA_270M}.")]
    assert leftovers == [f".{GEMMA_270M}.lock"]  # no temporary directory left behind


def test_failed_gemma_preparation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "_convert_gemma", _fake_convert([], fail=True))
    with pytest.raises(RuntimeError, match="conversion failed"):
        prepare_model(GEMMA_270M, tmp_path)
    parent = tmp_path / "models"
    assert not (parent / GEMMA_270M).exists()
    assert [p.name for p in parent.iterdir()] == [f".{GEMMA_270M}.lock"]


def test_concurrent_preparations_convert_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(models, "_convert_gemma", _fake_convert(calls))
    results: list[Path | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_model(GEMMA_270M, tmp_path)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == [tmp_path / "models" / GEMMA_270M] * 4


def test_progress_is_shown_on_a_console() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=False)
    with models._steps(console, "preparing x", 2) as advance:
        advance("first")
        advance("second")
        advance(None)
    output = buffer.getvalue()
    assert "preparing x: done" in output
    assert "2/2" in output
    with models._steps(None, "silent", 1) as advance:
        advance("nothing shown")


def test_load_model_can_choose_the_dtype() -> None:
    model, _ = load_model(TINY_RANDOM, Path("/nonexistent"), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
