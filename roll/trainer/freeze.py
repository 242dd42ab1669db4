"""Partial fine-tuning: only the top blocks of a decoder learn.

On a CPU box a full backward pass through all 30 blocks of a 135 M model costs about twice the forward pass. With
the embeddings and the lower blocks frozen, autograd stops at the first trainable block, so an update costs one
forward pass plus the backward pass of the top blocks (measured in scripts/bench/bench_smollm2.py)."""
from __future__ import annotations

from typing import Any


def decoder_blocks(model: Any) -> Any:
    """The list of transformer blocks of a Hugging Face causal LM (Llama, Qwen2, Mistral, ... layouts)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    blocks = getattr(base, "layers", None)
    if blocks is None:
        raise ValueError(f"trainer.trainable_layers: cannot find the transformer blocks of {type(model).__name__} "
                         f"(expected model.{getattr(model, 'base_model_prefix', 'model')}.layers)")
    return blocks


def freeze_lower_layers(model: Any, trainable_layers: int) -> int:
    """Freeze every parameter except the top `trainable_layers` blocks, the final norm and an output head that is
    not tied to the input embeddings. Returns the number of trainable parameters."""
    blocks = decoder_blocks(model)
    if trainable_layers > len(blocks):
        raise ValueError(f"trainer.trainable_layers={trainable_layers} but the model has {len(blocks)} blocks")
    model.requires_grad_(False)
    for block in list(blocks)[-trainable_layers:]:
        block.requires_grad_(True)
    base = getattr(model, model.base_model_prefix)
    if getattr(base, "norm", None) is not None:
        base.norm.requires_grad_(True)
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight is not embeddings.weight:
        head.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
