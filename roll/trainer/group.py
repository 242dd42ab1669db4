"""A group of `TrainerActor`s, one per data-parallel rank, placed by Ray resources and joined in one process group.

The driver talks to the group as to one trainer: every call fans out to all ranks with each rank's share of the
micro-batch plan, and the ranks' answers are merged (log-probs put back in plan order, metrics token-weighted)."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from roll.config.training import TrainerConfig
from roll.engines.config import WeightSyncConfig
from roll.ray_wait import get, wait_placement
from roll.trainer.actor import TrainerActor
from roll.trainer.batch import MicroBatch
from roll.trainer.collective_sync import CollectiveWeightSync
from roll.trainer.metric_reduction import combine


def merge_loss_metrics(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Combine per-rank update results: loss summed (each micro-batch loss is already a share of the global one),
    every other metric by the reduction its loss declared (`LossOutput.reductions`: max, min or sum), else averaged
    with loss-token weights."""
    merged: dict[str, float] = {"loss": sum(r["loss"] for r in results)}
    reductions: dict[str, str] = {}
    for result in results:
        reductions.update(result.get("reductions", {}))
    weights: dict[str, float] = {}
    sums: dict[str, float] = {}
    for result in results:
        for n, metrics in result["records"]:
            for key, value in metrics.items():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                reduction = reductions.get(key, "mean")
                if reduction == "mean":
                    sums[key] = sums.get(key, 0.0) + n * value
                    weights[key] = weights.get(key, 0.0) + n
                else:
                    merged[key] = combine(reduction, merged[key], value) if key in merged else value
    for key, total in sums.items():
        if key != "loss":
            merged[key] = total / weights[key] if weights[key] else 0.0
    norms = [r["grad_norm"] for r in results if r.get("grad_norm") is not None]
    merged["grad_norm"] = norms[0] if norms else float("nan")
    merged["lr"] = results[0]["lr"]
    merged["train_tokens"] = float(sum(r["tokens"] for r in results))
    peaks = [r["peak_rss_gb"] for r in results if r.get("peak_rss_gb") is not None]
    if peaks:
        merged["train_peak_rss_gb"] = max(peaks)  # the largest rank's resident-set high-water mark in the update
    return merged


class TrainerGroup:
    def __init__(self, model_path: str, cfg: TrainerConfig, total_steps: int = 1, name: str = "trainer",
                 call_timeout: float = 3600.0):
        self.cfg, self.world_size, self.call_timeout = cfg, cfg.world_size, call_timeout
        self.metric_reductions: dict[str, str] = {}  # as the losses declared them (see merge_loss_metrics)
        bundle = {"CPU": cfg.num_cpus_per_actor}
        if cfg.num_gpus_per_actor:
            bundle["GPU"] = cfg.num_gpus_per_actor
        self.placement = placement_group([dict(bundle) for _ in range(self.world_size)],
                                         strategy=cfg.placement_strategy, name=f"{name}-pg")
        wait_placement(self.placement, 300, f"{name}: placement of {self.world_size} rank(s)")
        remote = ray.remote(TrainerActor)
        self.actors = [
            remote.options(
                num_cpus=cfg.num_cpus_per_actor, num_gpus=cfg.num_gpus_per_actor, name=f"{name}-rank{rank}",
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=rank),
            ).remote(model_path, cfg.model_dump(), rank, self.world_size, total_steps)
            for rank in range(self.world_size)
        ]
        started = time.perf_counter()
        addr, port = get(self.actors[0].rendezvous.remote(), call_timeout, f"{name} rank 0: rendezvous")
        self.info = get([actor.setup.remote(addr, port) for actor in self.actors], call_timeout, f"{name}: setup")
        self.setup_s = time.perf_counter() - started
        self._collective: CollectiveWeightSync | None = None

    # ---- fan-out helpers ---------------------------------------------------------------------------------------
    def _all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return get([getattr(actor, method).remote(*args, **kwargs) for actor in self.actors], self.call_timeout,
                   f"trainer: {method}")

    def _sharded(self, method: str, per_rank: Sequence[Any], *args: Any, **kwargs: Any) -> list[Any]:
        if len(per_rank) != self.world_size:
            raise ValueError(f"{method}: got shares for {len(per_rank)} ranks, the group has {self.world_size}")
        refs = [getattr(actor, method).remote(share, *args, **kwargs) for actor, share in zip(self.actors, per_rank)]
        return get(refs, self.call_timeout, f"trainer: {method}")

    # ---- the trainer API ---------------------------------------------------------------------------------------
    def compute_logprobs(self, plan: Sequence[Sequence[Sequence[MicroBatch]]]) -> list[list[list[Any]]]:
        """Log-probs for every micro-batch of a plan ([mini][rank][mb] -> tensor), each rank running its share."""
        per_rank = [[mb for mini in plan for mb in mini[r]] for r in range(self.world_size)]
        answers = self._sharded("compute_logprobs", per_rank)
        cursors = [0] * self.world_size
        out = []
        for mini in plan:
            out.append([])
            for r in range(self.world_size):
                out[-1].append(answers[r][cursors[r]: cursors[r] + len(mini[r])])
                cursors[r] += len(mini[r])
        return out

    def sequence_logprobs(self, sequences: Sequence[Sequence[int]], pad_id: int = 0) -> list[list[float]]:
        """Log-probs of tokens 1..n-1 of each token sequence under the current weights (the engines' convention)."""
        from roll.trainer.batch import Sample, plan

        samples = [Sample(list(s), [-1] * len(s), [0.0] * len(s), [0] * len(s), trajectory=i)
                   for i, s in enumerate(sequences)]
        layout = plan(samples, pad_id=pad_id, max_tokens=self.cfg.max_tokens_per_microbatch,
                      world_size=self.world_size)
        out: list[list[float]] = [[] for _ in sequences]
        for mini, mini_lp in zip(layout, self.compute_logprobs(layout)):
            for rank, rank_lp in zip(mini, mini_lp):
                for mb, lp in zip(rank, rank_lp):
                    for row, index in enumerate(mb.sample_index.tolist()):
                        if index >= 0:
                            out[index] = lp[row, 1: len(sequences[index])].tolist()
        return out

    def train_step(self, mini: Sequence[Sequence[MicroBatch]], algorithm: str, params: dict[str, Any],
                   denominator: float, with_entropy: bool = False,
                   imitation: tuple[float, float] | None = None) -> dict[str, float]:
        return self._merge(self._sharded("train_step", mini, algorithm, params, denominator, with_entropy,
                                         imitation))

    def sft_step(self, mini: Sequence[Sequence[MicroBatch]], denominator: float) -> dict[str, float]:
        return self._merge(self._sharded("sft_step", mini, denominator))

    def _merge(self, results: list[dict[str, Any]]) -> dict[str, float]:
        for result in results:
            self.metric_reductions.update(result.get("reductions", {}))
        return merge_loss_metrics(results)

    def push_weights(self, engines: list[Any], version: int, bucket_bytes: int = 1 << 30,
                     sync: WeightSyncConfig | None = None) -> dict[str, float]:
        """Weights -> every engine in memory, version-tagged: through the Ray object store (TrainerActor.push_weights)
        or, with `sync.method: collective`, a torch.distributed broadcast (roll/trainer/collective_sync.py); timed."""
        started = time.perf_counter()
        if sync is not None and sync.method == "collective":
            if self._collective is None or not self._collective.serves(engines):
                self._collective = CollectiveWeightSync(self.actors, engines, sync.master_addr, sync.timeout_s)
            answers = [self._collective.push(version, sync.bucket_bytes)]
        else:
            answers = self._all("push_weights", engines, version, sync.bucket_bytes if sync else bucket_bytes)
        return {"sync_s": time.perf_counter() - started, "sync_gather_s": max(a["gather_s"] for a in answers),
                "sync_push_s": answers[0]["push_s"], "sync_bytes": answers[0]["bytes"]}

    def state_dict(self) -> dict[str, Any]:
        return self._all("gather_state_dict")[0]

    def save_hf(self, directory: str, tokenizer_source: str | None = None) -> str:
        return self._all("save_hf", directory, tokenizer_source)[0]

    def save_checkpoint(self, directory: str) -> None:
        self._all("save_checkpoint", directory)

    def load_checkpoint(self, directory: str) -> int:
        return self._all("load_checkpoint", directory)[0]

    def shutdown(self) -> None:
        try:
            self._all("shutdown")
        except Exception as exc:  # noqa: BLE001 - best effort: the actors are killed below anyway
            print(f"trainer shutdown: {exc!r}", file=sys.stderr)
        for actor in self.actors:
            ray.kill(actor)
        remove_placement_group(self.placement)
