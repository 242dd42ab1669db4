"""The DeepSpeed trainer: one instance per data-parallel rank, run as a Ray actor by `TrainerGroup`.

It wraps a Hugging Face causal LM in `deepspeed.initialize` (ZeRO stage from the config, a client AdamW and LR
schedule), joins the other ranks in one process group (gloo on CPU, nccl on GPUs) and offers what the driver needs:
log-probs of a batch, one policy update with a loss of `ipa`, an SFT update, the full weights for the inference
engines (gathered under ZeRO-3), and checkpoints. The loss itself is always `ipa`'s.
"""
from __future__ import annotations

import importlib.util
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from roll.config.training import TrainerConfig
from roll.engines.actor import verify_versions
from roll.engines.weight_sync import (Bucket, TensorSpec, backend_for_device, join_group, open_store, plan_buckets,
                                      send_buckets)
from roll.trainer.batch import MicroBatch
from roll.trainer.freeze import freeze_lower_layers
from roll.trainer.memory import peak_rss_gb, reset_peak_rss

def count_parameters(parameters) -> int:
    """Elements of `parameters`, counting a ZeRO-3 partitioned one whole (ds_numel)."""
    return sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in parameters)


DS_TAG = "deepspeed"
PUSH_TIMEOUT_S = 900.0  # one bucket to every engine (they drain in-flight requests first: engine.weight_sync_timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lr_lambda(cfg: TrainerConfig, total_steps: int):
    """Multiplier of the base LR at optimizer step s: linear warm-up, then constant / linear / cosine decay."""
    import math

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, total_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 1.0 - progress if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class TrainerActor:
    def __init__(self, model_path: str, cfg: dict[str, Any], rank: int, world_size: int, total_steps: int = 1):
        self.cfg = TrainerConfig.model_validate(cfg)
        self.model_path, self.rank, self.world_size = str(model_path), rank, world_size
        self.total_steps = self.cfg.total_steps or total_steps
        self.engine = None
        if self.cfg.torch_threads:
            import torch

            torch.set_num_threads(self.cfg.torch_threads)

    # ---- set-up ------------------------------------------------------------------------------------------------
    def rendezvous(self) -> tuple[str, int]:
        """Address and a free port of this actor's node, for rank 0 to host the process group."""
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def setup(self, master_addr: str, master_port: int) -> dict[str, Any]:
        """Join the process group, load the model and build the DeepSpeed engine."""
        started = time.perf_counter()
        import torch

        from roll.trainer.ds_config import deepspeed_config, runtime_problem

        problem = runtime_problem(self.cfg, cuda_available=torch.cuda.is_available(),
                                  accelerate_installed=importlib.util.find_spec("accelerate") is not None,
                                  ds_accelerator=os.environ.get("DS_ACCELERATOR"), torch_version=torch.__version__)
        if problem:
            raise RuntimeError(problem)
        os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        import deepspeed
        from deepspeed.accelerator import get_accelerator
        from transformers import AutoModelForCausalLM

        accel = get_accelerator()
        if (self.cfg.num_gpus_per_actor > 0 or self.cfg.backend == "nccl") and accel.device_name() == "cpu":
            raise RuntimeError(f"DeepSpeed chose the CPU accelerator but the trainer config asks for GPUs: check "
                               f"DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')} and the torch build")
        backend = self.cfg.backend if self.cfg.backend != "auto" else ("nccl" if accel.device_name() == "cuda" else
                                                                        "gloo")
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False, rank=self.rank,
                                   world_size=self.world_size, init_method=f"tcp://{master_addr}:{master_port}")
        self.device = torch.device(accel.device_name(), 0) if accel.device_name() != "cpu" else torch.device("cpu")
        self._seed_everything(self.cfg.seed)
        ds_config = deepspeed_config(self.cfg, self.world_size)
        dtype = getattr(torch, self.cfg.dtype)
        if self.cfg.zero_stage == 3:
            # Partition the weights while loading (zero.Init): a big model never sits whole on one rank (transformers
            # needs `accelerate` for it, checked above).
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(ds_config)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype,
                                                     attn_implementation=self.cfg.attn_implementation)
        model.config.use_cache = False
        if self.cfg.trainable_layers is not None:
            freeze_lower_layers(model, self.cfg.trainable_layers)
        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.cfg.lr, betas=tuple(self.cfg.betas), eps=self.cfg.eps,
                                      weight_decay=self.cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg, self.total_steps))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
        self.optimizer_steps = 0
        return {"rank": self.rank, "backend": backend, "device": str(self.device), "zero_stage": self.cfg.zero_stage,
                "setup_s": time.perf_counter() - started,
                "parameters": count_parameters(model.parameters()), "trainable_parameters": count_parameters(trainable)}

    def _seed_everything(self, seed: int) -> None:
        import torch

        random.seed(seed + self.rank)
        np.random.seed(seed + self.rank)
        torch.manual_seed(seed + self.rank)

    # ---- forward passes ----------------------------------------------------------------------------------------
    def compute_logprobs(self, micro_batches: list[MicroBatch]) -> list[Any]:
        """Log-probs [B,T] of each micro-batch under the current weights (no grad), as CPU float32 tensors."""
        from roll.trainer.logprobs import micro_batch_logprobs

        self.engine.eval()
        return micro_batch_logprobs(self.engine, micro_batches, self.device)

    # ---- updates -----------------------------------------------------------------------------------------------
    def train_step(self, micro_batches: list[MicroBatch], algorithm: str, params: dict[str, Any],
                   denominator: float, with_entropy: bool = False,
                   imitation: tuple[float, float] | None = None) -> dict[str, Any]:
        """One optimizer step over this rank's micro-batches with `ipa.compute_loss(algorithm, ...)`.

        Each micro-batch loss is normalised by `denominator`, the global batch's (all ranks, all micro-batches), so
        the summed gradient is the global batch's; DeepSpeed averages over ranks, hence the factor world_size.
        `imitation` (λ_IL, the mini-batch's replayed-prefix tokens): Eq. 10's SFT term on those tokens too."""
        from ipa import add_imitation, compute_loss

        def loss_fn(mb: MicroBatch, logp, entropy):
            out = compute_loss(algorithm, mb.loss_inputs(logp, entropy), global_denominator=denominator, **params)
            if imitation is None or mb.prefix_mask is None:
                return out
            return add_imitation(out, logp, mb.prefix_mask, lambda_il=imitation[0],
                                 il_global_denominator=imitation[1])

        return self._update(micro_batches, loss_fn, with_entropy)

    def sft_step(self, micro_batches: list[MicroBatch], denominator: float) -> dict[str, Any]:
        """One optimizer step of `ipa.sft_loss` (token-mean NLL over the loss mask, global denominator)."""
        from ipa import sft_loss

        return self._update(micro_batches, lambda mb, logp, _: sft_loss(logp, mb.loss_mask, denominator), False)

    def _update(self, micro_batches: list[MicroBatch], loss_fn, with_entropy: bool) -> dict[str, Any]:
        from roll.trainer.logprobs import forward_logprobs

        if not micro_batches:
            raise ValueError("train step with no micro-batches")
        started = time.perf_counter()
        reset_peak_rss()
        self.engine.train()
        loss_total, records, tokens, reductions = 0.0, [], 0, {}
        for i, mb in enumerate(micro_batches):
            mb = mb.to(self.device)
            self.engine.set_gradient_accumulation_boundary(i == len(micro_batches) - 1)
            logp, entropy = forward_logprobs(self.engine, mb.input_ids, mb.attention_mask, with_entropy=with_entropy,
                                             temperature=mb.temperature)  # the distribution that was sampled
            out = loss_fn(mb, logp, entropy)
            self.engine.backward(out.loss * self.world_size, scale_wrt_gas=False)
            loss_total += float(out.loss.detach())
            n = mb.num_loss_tokens
            tokens += int(mb.attention_mask.sum())
            records.append((n, dict(out.metrics)))
            reductions.update(out.reductions)
        self.engine.step()
        self.optimizer_steps += 1
        grad_norm = self.engine.get_global_grad_norm()
        return {"loss": loss_total, "records": records, "reductions": reductions, "grad_norm": None if grad_norm is None else float(grad_norm),
                "lr": float(self.scheduler.get_last_lr()[0]) if self.scheduler else self.cfg.lr,
                "tokens": tokens, "time_s": time.perf_counter() - started, "peak_rss_gb": peak_rss_gb()}

    # ---- weights out -------------------------------------------------------------------------------------------
    def iter_weights(self, device: str = "cpu", copy: bool = True):
        """(name, tensor on `device`) for every parameter, HF names; rank 0 gets the tensors, other ranks None. Under
        ZeRO-3 each parameter is gathered in turn, every rank taking part (so all ranks must iterate to the end), and
        always copied (the gathered tensor is freed); `copy=False` may return the parameter's own storage otherwise.
        """
        import deepspeed

        for name, param in self.engine.module.named_parameters():
            if hasattr(param, "ds_id"):  # ZeRO-3 partitioned
                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    yield name, param.detach().to(device, copy=True) if self.rank == 0 else None
            else:
                yield name, param.detach().to(device, copy=copy) if self.rank == 0 else None

    def gather_state_dict(self) -> dict[str, Any] | None:
        """The full weights (HF names) on rank 0 as CPU tensors, None on other ranks. Collective under ZeRO-3."""
        state = dict(self.iter_weights())
        return state if self.rank == 0 else None

    def push_weights(self, engines: list[Any], version: int, bucket_bytes: int = 1 << 30) -> dict[str, float]:
        """Send the current weights to every inference engine in memory, tagged with policy `version`.

        Rank 0 gathers the weights in buckets of about `bucket_bytes`, puts each bucket in the object store once and
        every engine loads it in place (admissions pause until the final bucket, which applies the version), so
        neither side ever holds a second full copy of a large model. Returns gather / push seconds and bytes."""
        import ray

        from roll.ray_wait import get

        started = time.perf_counter()
        gather_s = push_s = 0.0
        sent = 0
        bucket: dict[str, Any] = {}
        clock = time.perf_counter()
        plan = self.weight_plan(bucket_bytes)
        bucket_last = {planned[-1].name for planned in plan}
        failure: Exception | None = None
        for name, tensor in self.iter_weights():
            if self.rank != 0 or failure is not None:
                continue  # every rank gathers every parameter (ZeRO-3), even after a refused push: no rank hangs
            bucket[name] = tensor
            if name in bucket_last:
                gather_s += time.perf_counter() - clock
                clock = time.perf_counter()
                ref = ray.put(bucket)
                final = name == plan[-1][-1].name
                try:
                    get([engine.update_weights.remote(ref, version, final) for engine in engines], PUSH_TIMEOUT_S,
                        f"weight push of version {version} to {len(engines)} engine(s)")
                except Exception as exc:  # noqa: BLE001 - raised once every parameter has been gathered
                    failure = exc
                sent += sum(t.numel() * t.element_size() for t in bucket.values())
                bucket = {}
                push_s += time.perf_counter() - clock
                clock = time.perf_counter()
        if failure is not None:
            raise failure
        if self.rank != 0:
            gather_s = time.perf_counter() - started
        else:
            if not sent:
                raise ValueError("weight push with no weights")
            verify_versions(engines, version)
        return {"gather_s": gather_s, "push_s": push_s, "bytes": float(sent)}

    # ---- weights out through the collective group (roll/engines/weight_sync.py) -----------------------------------
    def _weight_specs(self) -> list[TensorSpec]:
        return [TensorSpec(name, tuple(getattr(p, "ds_shape", p.shape)), str(p.dtype).removeprefix("torch."))
                for name, p in self.engine.module.named_parameters()]

    def weight_plan(self, bucket_bytes: int) -> list[Bucket]:
        """The buckets of a collective push (the same on every rank)."""
        return plan_buckets(self._weight_specs(), bucket_bytes)

    def open_weight_sync(self, host: str, timeout_s: float) -> tuple[int, str]:
        """Rank 0: host the sync group's store; returns its port and the group's backend (by this rank's device)."""
        self._sync_store, port = open_store(host, timeout_s)
        return port, backend_for_device(str(self.device))

    def join_weight_sync(self, host: str, port: int, world_size: int, timeout_s: float) -> int:
        """Rank 0: join the sync group as its rank 0 (with the engines as ranks 1..world_size-1)."""
        self._sync_group = join_group(host, port, 0, world_size, backend_for_device(str(self.device)), timeout_s,
                                      store=self._sync_store)
        return 0

    def broadcast_weights(self, plan: list[Bucket]) -> dict[str, float]:
        """Every rank: gather the weights (ZeRO-3 needs all ranks); rank 0 broadcasts them bucket by bucket."""
        started = time.perf_counter()
        weights = self.iter_weights(device=str(self.device), copy=False)  # each bucket is concatenated anyway
        if self.rank != 0:
            for _ in weights:
                pass
            return {"gather_s": time.perf_counter() - started, "push_s": 0.0, "bytes": 0.0}
        if not plan:
            raise ValueError("weight push with no weights")
        sent = send_buckets(self._sync_group, plan, weights, str(self.device))
        return {"gather_s": 0.0, "push_s": time.perf_counter() - started, "bytes": float(sent)}

    def save_hf(self, directory: str, tokenizer_source: str | None = None) -> str | None:
        """Write the current weights as a Hugging Face checkpoint (rank 0) with the tokenizer of the source model."""
        from transformers import AutoConfig, AutoTokenizer

        state = self.gather_state_dict()
        if self.rank != 0:
            return None
        target = Path(directory)
        tmp = target.with_name(f".{target.name}.tmp")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        config = AutoConfig.from_pretrained(self.model_path)
        self.engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(tokenizer_source or self.model_path).save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return str(target)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: str) -> None:
        """Model, optimizer, LR schedule (DeepSpeed, every rank its shard) and this rank's RNG states."""
        import torch

        self.engine.save_checkpoint(directory, tag=DS_TAG, client_state={"optimizer_steps": self.optimizer_steps},
                                    save_latest=False)
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        torch.save(rng, Path(directory) / f"rng_rank{self.rank}.pt")

    def load_checkpoint(self, directory: str) -> int:
        import torch

        _, client = self.engine.load_checkpoint(directory, tag=DS_TAG, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
        if client is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}/{DS_TAG}")
        self.optimizer_steps = int(client.get("optimizer_steps", 0))
        rng = torch.load(Path(directory) / f"rng_rank{self.rank}.pt", weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        return self.optimizer_steps

    def rng_probe(self) -> float:
        """One draw from each RNG of this rank (for tests that check RNG states survive a checkpoint)."""
        import torch

        return float(torch.rand(()).item() + random.random() + np.random.rand())

    def shutdown(self) -> None:
        import deepspeed.comm as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
