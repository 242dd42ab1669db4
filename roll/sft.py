"""`roll sft`: supervised warm start on golden trajectories with the paper's error masking (Eq. 1-2).

Turns whose tool call failed carry train_mask=0 in the trajectory record; with error masking on, their tokens get no
loss (`ipa.sft_loss` over the remaining assistant tokens, token-mean over the global batch). Training runs on the
same DeepSpeed trainer actors as RL; the result is a Hugging Face checkpoint directory (weights + tokenizer) that the
RL run starts from."""
from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

from iflow.trajectory import Trajectory, load_jsonl
from roll.config.training import MetricsConfig, SFTConfig, TrainerConfig
from roll.metrics import MetricsLogger, Progress
from roll.trainer.batch import Sample, plan, samples_from_trajectories
from roll.trainer.group import TrainerGroup


def load_trajectories(paths: Sequence[str | Path]) -> list[Trajectory]:
    trajectories = [t for path in paths for t in load_jsonl(path)]
    if not trajectories:
        raise ValueError(f"no trajectories in {list(map(str, paths))}")
    return trajectories


def sft_samples(trajectories: Sequence[Trajectory], cfg: SFTConfig, max_seq_len: int | None) -> list[Sample]:
    samples = samples_from_trajectories(trajectories, error_masking=cfg.error_masking, max_seq_len=max_seq_len)
    samples = [s for s in samples if s.num_loss_tokens > 0]
    if not samples:
        raise ValueError("no trainable tokens in the SFT data (every turn masked?)")
    return samples


def batches(n: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Index batches for all epochs: a fresh seeded shuffle per epoch, the last short batch kept."""
    out = []
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(order)
        out.extend(order[i: i + batch_size] for i in range(0, n, batch_size))
    return out


def run_sft(
    *, model_path: str | Path, trajectories: Sequence[Trajectory], sft: SFTConfig, trainer: TrainerConfig,
    metrics: MetricsConfig, run_dir: str | Path, pad_id: int, output_dir: str | Path | None = None,
    config_dump: dict | None = None,
) -> Path:
    """Train on `trajectories` and write the HF checkpoint; returns its directory."""
    run_dir = Path(run_dir)
    output = Path(output_dir or sft.output_dir or run_dir / "sft_model")
    samples = sft_samples(trajectories, sft, trainer.max_seq_len)
    schedule = batches(len(samples), sft.batch_size, sft.epochs, sft.shuffle_seed)
    trainer_cfg = trainer.model_copy(update={"lr": sft.lr or trainer.lr, "mini_batches": 1})
    logger = MetricsLogger(run_dir, metrics, config=config_dump, name=f"{run_dir.name}-sft", filename="sft_metrics.jsonl")
    group = TrainerGroup(str(model_path), trainer_cfg, total_steps=len(schedule), name="sft")
    progress = Progress(len(schedule), "sft", metrics.progress_bar, fields=("loss", "nll", "lr"))
    try:
        for step, indices in enumerate(schedule, 1):
            started = time.perf_counter()
            chosen = [samples[i] for i in indices]
            mini = plan(chosen, pad_id=pad_id, max_tokens=trainer_cfg.max_tokens_per_microbatch,
                        world_size=trainer_cfg.world_size)[0]
            denominator = float(sum(s.num_loss_tokens for s in chosen))
            out = group.sft_step(mini, denominator)
            elapsed = time.perf_counter() - started
            out.update(epoch=(step - 1) * sft.epochs // len(schedule), sequences=len(chosen),
                       loss_tokens=denominator, step_s=elapsed, tokens_per_s=out["train_tokens"] / elapsed)
            logger.log(step, out)
            progress.update(out)
        progress.close()
        group.save_hf(str(output), tokenizer_source=str(model_path))
        logger.summary({"sft_steps": len(schedule), "sft_samples": len(samples), "sft_output": str(output)})
    finally:
        progress.close()
        logger.close()
        group.shutdown()
    return output


def masked_fraction(samples: Sequence[Sample]) -> float:
    """Share of assistant tokens that error masking removed (for the log)."""
    assistant = sum(sum(1 for t in s.turn_ids if t >= 0) for s in samples)
    kept = sum(s.num_loss_tokens for s in samples)
    return 0.0 if assistant == 0 else 1.0 - kept / assistant


def steps_for(n_samples: int, cfg: SFTConfig) -> int:
    return cfg.epochs * math.ceil(n_samples / cfg.batch_size)
