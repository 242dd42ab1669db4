"""The default model: a tiny Qwen2 causal LM built from a config plus a byte-level BPE tokenizer trained offline.

`ensure_tiny_model()` builds it once and caches it as an ordinary Hugging Face checkpoint directory (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json with a ChatML chat template), so every consumer (vLLM,
transformers, DeepSpeed) loads it from a local path and nothing is downloaded. The cache key is a hash of the spec,
so different overrides never collide. The tokenizer's training text is the caller's (`corpus`: seed -> texts; by
default generic text, see roll/models/resolve.py) and its hash is part of the cache key. The directory is
written to a temporary sibling and renamed into place, so concurrent callers are safe (the loser of the race discards
its copy)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from roll.models.chat_template import CHAT_TEMPLATE

Corpus = Callable[[int], Iterable[str]]  # seed -> the tokenizer's training texts

BUILD_VERSION = "1"
MARKER = "letitflow-tiny.json"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

DEFAULT_SPEC: dict[str, Any] = {
    "vocab_size": 2048,  # total, special and tool tokens included
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "seed": 0,
    "init_std": 0.02,
}


def default_cache_dir() -> Path:
    root = os.environ.get("LETITFLOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "letitflow")
    return Path(root)


def tiny_spec(**overrides: Any) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(DEFAULT_SPEC))
    if unknown:
        raise ValueError(f"unknown tiny-model option(s) {unknown}; expected some of {sorted(DEFAULT_SPEC)}")
    spec = {**DEFAULT_SPEC, **overrides}
    if spec["head_dim"] < 32:
        raise ValueError(f"head_dim must be >= 32 (vLLM CPU attention), got {spec['head_dim']}")
    return spec


@functools.lru_cache(maxsize=8)
def corpus_digest(corpus: Corpus, seed: int = 0) -> str:
    digest = hashlib.sha256()
    for text in corpus(seed):
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def spec_hash(spec: dict[str, Any], corpus: Corpus) -> str:
    """Hash of the spec, the build code version and the tokenizer corpus (which follows the agent's prompts)."""
    blob = json.dumps({"spec": spec, "build": BUILD_VERSION, "corpus": corpus_digest(corpus, spec["seed"])},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_tiny_model(path: str | Path | None = None, *, corpus: Corpus, **overrides: Any) -> Path:
    """Return the directory of the tiny checkpoint described by DEFAULT_SPEC + overrides, building it if missing
    (its tokenizer trained on `corpus(seed)`).

    `path=None` caches under ~/.cache/letitflow/tiny-model-<hash> (or $LETITFLOW_CACHE)."""
    spec = tiny_spec(**overrides)
    target = Path(path) if path is not None else default_cache_dir() / f"tiny-model-{spec_hash(spec, corpus)}"
    marker = target / MARKER
    if marker.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("spec") != spec:
            raise ValueError(f"{target} holds a tiny model with a different spec; choose another path")
        return target
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not a tiny-model checkpoint (no {MARKER})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _build(tmp, spec, corpus)
        if target.exists():
            target.rmdir()  # an empty directory left by the caller
        os.rename(tmp, target)
    except OSError:
        if not (target / MARKER).exists():  # not a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tokenizer(vocab_size: int, corpus: Corpus, seed: int = 0):
    """Train a byte-level BPE on `corpus(seed)` and wrap it as PreTrainedTokenizerFast with ChatML tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    n_added = len(SPECIAL_TOKENS) + len(TOOL_TOKENS)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - n_added, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                      pad_token="<|endoftext|>", unk_token=None, clean_up_tokenization_spaces=False,
                                      model_max_length=DEFAULT_SPEC["max_position_embeddings"])
    wrapped.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    wrapped.add_tokens(TOOL_TOKENS, special_tokens=False)
    wrapped.chat_template = CHAT_TEMPLATE
    if len(wrapped) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(wrapped)} tokens, expected vocab_size={vocab_size}")
    return wrapped


def _build(directory: Path, spec: dict[str, Any], corpus: Corpus) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    directory.mkdir(parents=True)
    tokenizer = build_tokenizer(spec["vocab_size"], corpus, seed=spec["seed"])
    config = Qwen2Config(
        vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"], num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"], head_dim=spec["head_dim"],
        max_position_embeddings=spec["max_position_embeddings"], rope_theta=spec["rope_theta"],
        tie_word_embeddings=False, initializer_range=spec["init_std"], use_sliding_window=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
    )
    torch.manual_seed(spec["seed"])
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / MARKER).write_text(json.dumps({"spec": spec, "build": BUILD_VERSION,
                                                "corpus": corpus_digest(corpus, spec["seed"])},
                                               indent=1, sort_keys=True))
