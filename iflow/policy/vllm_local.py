"""A token policy over an in-process vLLM engine: exact prompt ids in, completion ids + engine log-probs out.

vLLM is imported only when this policy is built, so the agent itself does not need it. `LLM.generate` is
synchronous; calls run in a worker thread, one at a time (the engine is not re-entrant)."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from iflow.policy.base import Completion, SamplingParams


class VLLMTokenPolicy:
    def __init__(self, llm: Any, tokenizer: Any | None = None, policy_version: int = 0) -> None:
        self.llm = llm
        self.tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()
        self.policy_version = policy_version
        self._lock = threading.Lock()

    @classmethod
    def from_path(cls, model_path: str | Path, **engine_kwargs: Any) -> VLLMTokenPolicy:
        """Start an engine on a local checkpoint. CPU-friendly defaults; any `vllm.LLM` keyword overrides them."""
        from vllm import LLM

        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"model path {str(model_path)!r} is not a directory")
        options = {"enforce_eager": True, "dtype": "float32", "max_model_len": 4096, "seed": 0, **engine_kwargs}
        return cls(LLM(model=str(path), **options))

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        if not prompt_ids:
            raise ValueError("prompt_ids is empty")
        return await asyncio.to_thread(self._generate, list(prompt_ids), sampling)

    def _generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        from vllm import SamplingParams as EngineSampling
        from vllm.inputs import TokensPrompt

        params = EngineSampling(temperature=sampling.temperature, top_p=sampling.top_p,
                                top_k=max(0, sampling.top_k), max_tokens=sampling.max_tokens,
                                stop=sampling.stop or None, seed=sampling.seed, logprobs=0)
        with self._lock:
            version = self.policy_version
            output = self.llm.generate([TokensPrompt(prompt_token_ids=prompt_ids)], params, use_tqdm=False)[0]
        sample = output.outputs[0]
        token_ids = list(sample.token_ids)
        logprobs = [float(entry[token].logprob) for token, entry in zip(token_ids, sample.logprobs or [])]
        if len(logprobs) != len(token_ids):
            raise RuntimeError(f"vLLM returned {len(logprobs)} log-probs for {len(token_ids)} tokens")
        return Completion(text=sample.text, token_ids=token_ids, logprobs=logprobs, finish_reason=sample.finish_reason,
                          policy_version=version, prompt_tokens=len(prompt_ids))
