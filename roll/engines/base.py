"""The engine contract shared by the vLLM and transformers engines.

An engine owns one model and one serving thread. Callers (asyncio or threads) submit requests; the serving thread
batches them, runs the model and resolves each request's future with a result dict:

    {"token_ids": [...], "logprobs": [...], "text": "...", "finish_reason": "stop" | "length" | "abort",
     "policy_version": 3, "prompt_tokens": 412, "queue_seconds": 0.01, "engine_seconds": 0.2}

`logprobs` are the log-probabilities of the sampled tokens under the distribution actually sampled from (after
temperature, top-k and top-p: vLLM's processed_logprobs; greedy decoding gives the raw ones), the behaviour policy
μ a trainer corrects for; it scores the same distribution (logits / temperature; RL refuses top-p/top-k). New weights are applied between batches only after
the requests in flight have finished (admissions pause meanwhile), so `policy_version` names exactly the weights that
produced every token of a completion."""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from iflow.policy.base import SamplingParams

Weights = Mapping[str, Any] | Iterable[tuple[str, Any]]
_ids = itertools.count()


class EngineError(RuntimeError):
    """The engine failed or is closed; requests in flight fail with it."""


class Sampling(SamplingParams):
    """iflow's sampling parameters, as the engines take and batch them."""

    @classmethod
    def from_any(cls, value: Any) -> Sampling:
        """From a dict, an iflow SamplingParams or a Sampling. Unknown keys are an error."""
        if isinstance(value, Sampling):
            return value
        data = value.model_dump() if hasattr(value, "model_dump") else dict(value or {})
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise ValueError(f"unknown sampling parameter(s) {sorted(unknown)}")
        return cls(**data)

    def key(self) -> tuple:
        return (self.temperature, self.top_p, self.top_k, self.max_tokens, tuple(self.stop), self.seed)


@dataclass
class Request:
    prompt_ids: list[int]
    sampling: Sampling
    future: cf.Future
    kind: str = "generate"  # generate | logprobs
    id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    submitted: float = field(default_factory=time.monotonic)
    admitted: float = 0.0
    version: int = 0


@dataclass
class WeightUpdate:
    weights: list[tuple[str, Any]]
    version: int
    final: bool
    future: cf.Future


def result_dict(req: Request, token_ids: list[int], logprobs: list[float], text: str,
                finish_reason: str | None) -> dict[str, Any]:
    now = time.monotonic()
    return {"token_ids": [int(t) for t in token_ids], "logprobs": [float(x) for x in logprobs], "text": text,
            "finish_reason": finish_reason, "policy_version": req.version, "prompt_tokens": len(req.prompt_ids),
            "queue_seconds": max(0.0, req.admitted - req.submitted), "engine_seconds": max(0.0, now - req.admitted)}


def _resolve(future: cf.Future, value: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class ThreadedEngine(ABC):
    """Command inbox + one serving thread. Subclasses implement `_serve_once` and the model-specific hooks."""

    name = "engine"

    def __init__(self, max_model_len: int, weight_sync_timeout: float = 300.0) -> None:
        self.max_model_len = max_model_len
        self.weight_sync_timeout = weight_sync_timeout
        self.policy_version = 0
        self._partial_version: int | None = None  # between the first and the final chunk of a weight update
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.stats: dict[str, float] = {"requests": 0, "completion_tokens": 0, "prompt_tokens": 0,
                                        "weight_updates": 0, "aborted": 0}
        self._closed = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ---- caller side ------------------------------------------------------------------------------------------
    def start(self) -> ThreadedEngine:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-serve", daemon=True)
        self._thread.start()
        return self

    def submit(self, prompt_ids: list[int], sampling: Any, kind: str = "generate") -> Request:
        self._check_alive()
        if not prompt_ids:
            raise ValueError("prompt_ids is empty")
        request = Request(list(map(int, prompt_ids)), Sampling.from_any(sampling), cf.Future(), kind)
        self.inbox.put(request)
        return request

    async def generate(self, prompt_ids: list[int], sampling: Any, timeout: float | None = None) -> dict[str, Any]:
        request = self.submit(prompt_ids, sampling)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(request.future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.inbox.put(("abort", request.id))
            raise

    def generate_sync(self, prompt_ids: list[int], sampling: Any, timeout: float | None = None) -> dict[str, Any]:
        request = self.submit(prompt_ids, sampling)
        try:
            return request.future.result(timeout)
        except cf.TimeoutError:
            self.inbox.put(("abort", request.id))
            raise

    def compute_logprobs_sync(self, sequences: list[list[int]], timeout: float | None = None) -> list[list[float]]:
        """Log-probs of tokens 1..n-1 of each sequence given its prefix (length n-1 per sequence)."""
        requests = [self.submit(seq, Sampling(max_tokens=1), kind="logprobs") for seq in sequences]
        return [r.future.result(timeout) for r in requests]

    def update_weights_sync(self, weights: Weights, version: int, final: bool = True,
                            timeout: float | None = None) -> int:
        """Load (a chunk of) new weights. Admissions pause until the final chunk; the version applies with it."""
        self._check_alive()
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        if not items:
            raise ValueError("weight update with no weights")
        self._check_version(int(version))  # fail fast; the serving thread checks again when it applies the update
        update = WeightUpdate(items, int(version), final, cf.Future())
        self.inbox.put(update)
        return update.future.result(timeout or self.weight_sync_timeout + 60)

    async def update_weights(self, weights: Weights, version: int, final: bool = True) -> int:
        return await asyncio.to_thread(self.update_weights_sync, weights, version, final)

    async def compute_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return await asyncio.to_thread(self.compute_logprobs_sync, sequences)

    def close(self) -> None:
        self._closed.set()
        self.inbox.put(("close", None))
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise EngineError(f"{self.name} engine failed: {self._failure!r}")
        if self._closed.is_set():
            raise EngineError(f"{self.name} engine is closed")

    # ---- serving thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                self._serve_once()
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn about it
            self._failure = exc
        finally:
            self._fail_all(EngineError(f"{self.name} engine stopped" + (f": {self._failure!r}" if self._failure
                                                                        else "")))

    def _take(self, block: bool, timeout: float = 0.05) -> list[Any]:
        items = []
        try:
            items.append(self.inbox.get(block=block, timeout=timeout if block else None))
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    def check_push_version(self, version: int) -> None:
        """Raise ValueError if a push of `version` would be refused (not newer than the served policy)."""
        self._check_version(int(version))

    def _check_version(self, version: int) -> None:
        """A push must be newer than the served policy, and every chunk of one update carries the same version."""
        if version <= self.policy_version:
            raise ValueError(f"refusing weights of policy version {version}: this engine already serves version "
                             f"{self.policy_version} (versions must increase)")
        if self._partial_version is not None and version != self._partial_version:
            raise ValueError(f"refusing weights of policy version {version} in the middle of the update to version "
                             f"{self._partial_version}")

    def _apply_update(self, update: WeightUpdate) -> None:
        try:
            self._check_version(update.version)
            self._partial_version = update.version
            self._load_weights(update.weights)
            if update.final:
                self._after_weights()
                self.policy_version = update.version
                self._partial_version = None
                self.stats["weight_updates"] += 1
            _resolve(update.future, self.policy_version)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the engine keeps serving
            _resolve(update.future, error=exc)

    @abstractmethod
    def _serve_once(self) -> None: ...

    @abstractmethod
    def _load_weights(self, weights: list[tuple[str, Any]]) -> None: ...

    def _after_weights(self) -> None:
        """Hook: drop caches that depend on the old weights."""

    @abstractmethod
    def _fail_all(self, error: BaseException) -> None: ...
