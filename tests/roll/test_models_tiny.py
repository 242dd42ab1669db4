"""The tiny default checkpoint: a real HF checkpoint that transformers and vLLM load offline."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from roll.models.tiny import MARKER, tiny_spec
from roll.models.generic_corpus import generic_corpus
from roll.models.resolve import default_tiny_model
from roll.tasks.relay import code_space
from roll.tasks.secret_word import make_task

TOOLS = [
    {"type": "function", "function": {
        "name": "bash", "description": "Run a bash command in the workspace and return its output.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "submit", "description": "Finish the task.", "parameters": {"type": "object", "properties": {}}}},
]


def test_loads_offline_with_transformers(tiny_model_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, local_files_only=True)
    assert model.config.model_type == "qwen2"
    assert model.config.tie_word_embeddings is False
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and model.config.eos_token_id == tokenizer.eos_token_id
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>"):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.encode("cat notes/memo3.txt")])).logits
    assert logits.shape[-1] == len(tokenizer)


def test_chat_template_tools_and_tool_responses(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Read the note."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "bash", "arguments": {"command": "cat a.txt"}}}]},
        {"role": "tool", "content": "The secret word is apple."},
    ]
    text = tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nsys\n\n# Tools\n")
    assert '\n{"type": "function", "function": {"name": "bash"' in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "bash", "arguments": {"command": "cat a.txt"}}\n'
            "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nThe secret word is apple.\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n") in text
    assert text.endswith("<|im_start|>assistant\n")
    no_tools = tokenizer.apply_chat_template(messages[1:2], tokenize=False)
    assert "# Tools" not in no_tools and no_tools.startswith("<|im_start|>system\nYou are a coding agent")


def test_tokenizer_is_not_fitted_to_the_tasks(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    text = "".join(generic_corpus())
    task = make_task(0)
    for phrase in ("The secret word is", "answer.txt", "access code", task.instruction, "<tool_call>"):
        assert phrase not in text, phrase
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    codes = code_space()[::97]
    multi = [c for c in codes if len(tokenizer.encode(" " + c, add_special_tokens=False)) > 1]
    assert len(multi) == len(codes)  # answers are copied token by token, not recalled as one symbol


def test_spec_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="hidden_sizes"):
        tiny_spec(hidden_sizes=64)
    with pytest.raises(ValueError, match="head_dim"):
        tiny_spec(head_dim=16)


def _build(path: str) -> str:
    return str(default_tiny_model(path, num_hidden_layers=1, hidden_size=64, intermediate_size=128, head_dim=32,
                                 num_attention_heads=2, num_key_value_heads=1))


def test_concurrent_builds_are_safe(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build, [str(target)] * 2)
    assert results == [str(target)] * 2
    assert json.loads((target / MARKER).read_text())["spec"]["hidden_size"] == 64
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no temporary directories left behind
    # cached: a second call returns at once; a different spec at the same path is refused
    assert _build(str(target)) == str(target)
    with pytest.raises(ValueError, match="different spec"):
        default_tiny_model(target)


def test_vllm_loads_it(tiny_model_path: Path) -> None:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(tiny_model_path), dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
              gpu_memory_utilization=0.5)
    out = llm.generate({"prompt_token_ids": [1, 2, 3]}, SamplingParams(max_tokens=4, logprobs=0, ignore_eos=True),
                       use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4
    assert all(len(d) >= 1 for d in out[0].outputs[0].logprobs)
