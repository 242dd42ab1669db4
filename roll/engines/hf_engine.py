"""Hugging Face transformers engine behind the same contract: the benchmark baseline and the fallback where vLLM is
missing. Requests that arrive within `hf_batch_wait_ms` are generated together (left-padded, static batching);
weights change only between batches."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from roll.engines.base import EngineError, Request, ThreadedEngine, WeightUpdate, _resolve, result_dict
from roll.engines.config import EngineConfig

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class HFEngine(ThreadedEngine):
    name = "hf"

    def __init__(self, model_path: str | Path, cfg: EngineConfig, dtype: str = "float32",
                 device: str | None = None) -> None:
        super().__init__(cfg.max_model_len, cfg.weight_sync_timeout)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() and cfg.num_gpus > 0 else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, _DTYPES[dtype]))
        self.model.to(self.device).eval()
        self.max_batch = cfg.hf_max_batch
        self.batch_wait = cfg.hf_batch_wait_ms / 1000.0
        self.seed = cfg.seed
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        self._pending: list[Request] = []
        self.start()

    # ---- serving thread ---------------------------------------------------------------------------------------
    def _serve_once(self) -> None:
        items = self._take(block=True, timeout=0.05)
        if not items:
            return
        deadline = time.monotonic() + self.batch_wait
        while time.monotonic() < deadline and sum(isinstance(i, Request) for i in items) < self.max_batch:
            items += self._take(block=True, timeout=max(1e-3, deadline - time.monotonic()))
        aborted = {item[1] for item in items if isinstance(item, tuple) and item[0] == "abort"}
        if any(isinstance(item, tuple) and item[0] == "close" for item in items):
            self._closed.set()
        requests = [item for item in items if isinstance(item, Request) and item.id not in aborted]
        for request in (item for item in items if isinstance(item, Request) and item.id in aborted):
            _resolve(request.future, error=EngineError("request aborted (timed out or cancelled)"))
        for update in (item for item in items if isinstance(item, WeightUpdate)):
            self._apply_update(update)  # nothing is in flight between batches
        self._pending = requests
        groups: dict[tuple, list[Request]] = defaultdict(list)
        for request in requests:
            groups[(request.kind, request.sampling.key())].append(request)
        for (kind, _), group in groups.items():
            for start in range(0, len(group), self.max_batch):
                batch = group[start:start + self.max_batch]
                try:
                    self._run_logprobs(batch) if kind == "logprobs" else self._run_generate(batch)
                except Exception as exc:  # noqa: BLE001 - the batch fails, the engine keeps serving
                    for request in batch:
                        _resolve(request.future, error=EngineError(f"hf generation failed: {exc!r}"))
        self._pending = []

    def _padded(self, sequences: list[list[int]]):
        torch = self.torch
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _run_generate(self, batch: list[Request]) -> None:
        torch = self.torch
        s = batch[0].sampling
        for request in batch:
            request.admitted, request.version = time.monotonic(), self.policy_version
        room = min(self.max_model_len - len(r.prompt_ids) for r in batch)
        live = [r for r in batch if self.max_model_len - len(r.prompt_ids) > 0]
        for request in batch:
            if request not in live:
                _resolve(request.future, result_dict(request, [], [], "", "length"))
        if not live:
            return
        max_new = max(1, min(s.max_tokens, max(room, 1)))
        ids, mask = self._padded([r.prompt_ids for r in live])
        if s.seed is not None:
            torch.manual_seed(s.seed)
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=s.temperature > 0, output_logits=True,
                                      output_scores=True,
                                      return_dict_in_generate=True, pad_token_id=self.pad_id,
                                      eos_token_id=sorted(self.eos_ids) or None)
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k if s.top_k > 0 else 0)
        if s.stop:
            kwargs.update(stop_strings=list(s.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out.sequences[:, ids.shape[1]:]
        # The distribution sampled from: scores after temperature / top-k / top-p when sampling, raw when greedy.
        steps = out.scores if s.temperature > 0 else out.logits
        logprobs = torch.stack(steps, dim=1).float().log_softmax(-1)
        chosen = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        for row, request in enumerate(live):
            tokens, values, reason = [], [], "length"
            for step, token in enumerate(new[row].tolist()):
                tokens.append(token)
                values.append(float(chosen[row, step]))
                if token in self.eos_ids:
                    reason = "stop"
                    break
                if s.stop and any(stop in self.tokenizer.decode(tokens) for stop in s.stop):
                    reason = "stop"
                    break
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            for stop in s.stop:
                if reason == "stop" and stop in text:
                    text = text[:text.index(stop)]
            self.stats["requests"] += 1
            self.stats["prompt_tokens"] += len(request.prompt_ids)
            self.stats["completion_tokens"] += len(tokens)
            _resolve(request.future, result_dict(request, tokens, values, text, reason))

    def _run_logprobs(self, batch: list[Request]) -> None:
        torch = self.torch
        for request in batch:
            request.admitted, request.version = time.monotonic(), self.policy_version
        ids, mask = self._padded([r.prompt_ids for r in batch])
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.float()
        logprobs = logits.log_softmax(-1)[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for row, request in enumerate(batch):
            n = len(request.prompt_ids)
            _resolve(request.future, logprobs[row, ids.shape[1] - n:].tolist())

    def _load_weights(self, weights: list[tuple[str, Any]]) -> None:
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        unknown = [name for name, _ in weights if name not in params]
        if unknown:
            raise KeyError(f"unknown weight name(s) {unknown[:5]}")
        with self.torch.no_grad():
            for name, tensor in weights:
                params[name].copy_(tensor.to(params[name].dtype))

    def _fail_all(self, error: BaseException) -> None:
        for request in self._pending:
            _resolve(request.future, error=error)
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, (Request, WeightUpdate)):
                _resolve(item.future, error=error)
