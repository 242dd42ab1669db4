"""The RL loop: a single controller driving Ray actors (vLLM engines, env workers running the iFlow agent in ROCK
sandboxes, DeepSpeed trainer ranks, an optional reference model).

One step, as in the paper:
    roll out -> (recompute old log-probs) -> chunks, masks, ratios -> IPA update -> push weights -> log -> checkpoint

Policy versions: the engines start at version 0 (the starting weights); after step s the trainer's weights are
pushed as version s. With async rollout the scheduler only accepts samples produced by versions >= s - staleness."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ray
from rich.console import Console

from roll.config.placement import check_cluster
from roll.config.schema import RootConfig
from roll.curve_plot import plot_learning_curve, read_metrics, text_curve
from roll.metrics import MetricsLogger, Progress, safety_panel
from roll.run_state import TrajectoryStore, lr_horizon, restore_scheduler, scheduler_state
from roll.models.resolve import resolve_model_path
from roll.trainer.batch import build_samples
from roll.trainer.checkpoint import CheckpointManager, load_driver_state, resolve_resume
from roll.trainer.update import attach, mismatch_stats, prepare, run_update, scoring_temperature


class RLDriver:
    def __init__(self, cfg: RootConfig, run_dir: str | Path, console: Console | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.console = console or Console(stderr=True)
        self.engines = self.trainer = self.reference = self.scheduler = self.logger = None
        self.version = 0
        self.start_step = 0
        self.evals: dict[str, Any] = {}
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", keep=cfg.loop.keep_checkpoints)
        self.store = TrajectoryStore(self.run_dir)
        self._ray_started = False
        self._checkpoint_s: float | None = None
        self.lr_horizon = 0

    # ---- set-up -------------------------------------------------------------------------------------------------
    def setup(self) -> RLDriver:
        from transformers import AutoTokenizer

        from roll.engines.actor import EngineGroup
        from roll.rollout.ray_setup import init_ray
        from roll.trainer.group import TrainerGroup

        cfg = self.cfg
        self._ray_started = init_ray(cfg.ray)
        check_cluster(cfg, ray.cluster_resources().get("GPU", 0.0))  # the layout was checked against ray.num_gpus
        self.model_path = resolve_model_path(cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        checkpoint = resolve_resume(cfg.loop.resume, self.run_dir) if cfg.loop.resume else None
        with self.console.status("starting engines and trainer"):
            self.engines = EngineGroup.create(self.model_path, cfg.engine, dtype=cfg.model.dtype)
            saved = load_driver_state(checkpoint, restore_rng=False) if checkpoint is not None else None
            self.lr_horizon, warning = lr_horizon(cfg, saved)  # fixed at the first start (see roll/run_state.py)
            if warning:
                self.console.print(f"[yellow]{warning}[/yellow]")
            self.trainer = TrainerGroup(str(self.model_path), cfg.trainer, total_steps=self.lr_horizon,
                                        call_timeout=cfg.ray.call_timeout)
            if cfg.algorithm.kl_coef > 0:
                from roll.trainer.reference import ReferenceModel

                self.reference = ReferenceModel(str(self.model_path), cfg.trainer.dtype,
                                                num_gpus=cfg.trainer.num_gpus_per_actor,
                                                call_timeout=cfg.ray.call_timeout)
        driver_state = None
        if checkpoint is not None:
            self.trainer.load_checkpoint(str(checkpoint))
            driver_state = load_driver_state(checkpoint)
            self.start_step, self.version = int(driver_state["step"]), int(driver_state["policy_version"])
            self.evals = dict(driver_state.get("evals", {}))
            self.trainer.push_weights(self.engines.actors, self.version, sync=cfg.sync)
            self.store.discard_after(self.start_step + 1)
            self.console.print(f"resumed from {checkpoint} (step {self.start_step}, policy version {self.version})")
        self.logger = MetricsLogger(self.run_dir, cfg.metrics, config=cfg.model_dump(mode="json"),
                                    name=cfg.run.name, resume_step=self.start_step if checkpoint else None)
        if cfg.loop.eval_at_end and cfg.loop.eval_start and "start" not in self.evals:
            self.evals["start"] = self.evaluate("start")
        self.scheduler = self._scheduler()
        if driver_state is not None and "scheduler" in driver_state:
            restore_scheduler(self.scheduler, driver_state["scheduler"])
        self.scheduler.start()
        return self

    def _scheduler(self):
        from roll.rollout.scheduler import RolloutScheduler
        from roll.tasks.dataset import load_tasks

        cfg = self.cfg
        return RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, self.model_path, self.engines,
                                load_tasks(cfg.task), seed=cfg.run.seed, shuffle=cfg.task.shuffle,
                                request_timeout=cfg.engine.request_timeout)

    # ---- one RL step --------------------------------------------------------------------------------------------
    def step(self, step: int) -> dict[str, Any]:
        cfg, algo, times = self.cfg, self.cfg.algorithm, {}
        started = time.perf_counter()

        batch = self.rollout(step)  # roll out with policy version step-1 (or up to `staleness` older)
        times["rollout_s"] = time.perf_counter() - started

        trajectories, filtered_groups = self.select(batch)
        built = build_samples(trajectories, error_masking=algo.error_masking, max_seq_len=cfg.trainer.max_seq_len,
                              truncation=cfg.trainer.truncation,
                              failure_reward=algo.failure_reward,  # chunks = turns of the record
                              reward_baseline=algo.reward_baseline)
        samples = built.samples
        train: dict[str, Any] = {}
        if samples:
            update = prepare(samples, algo, cfg.trainer, self.pad_id,  # masks, chunk ids, micro-batches
                             temperature=scoring_temperature(cfg.agent.sampling))  # score what was sampled
            clock = time.perf_counter()
            if algo.recompute_old_logprobs:
                attach(update, self.trainer.compute_logprobs(update.plan), "old_logp")
            times["old_logp_s"] = time.perf_counter() - clock
            if self.reference is not None:
                clock = time.perf_counter()
                attach(update, self.reference.compute_logprobs(update.plan), "ref_logp")
                times["ref_logp_s"] = time.perf_counter() - clock
            clock = time.perf_counter()
            train = run_update(self.trainer, update, algo, cfg.trainer.epochs)  # IPA (or baseline) update
            times["train_s"] = time.perf_counter() - clock
            train.update(mismatch_stats(update))

        self.version = step
        sync = self.trainer.push_weights(self.engines.actors, self.version, sync=cfg.sync)  # version-checked

        metrics = self.step_metrics(batch, train, times, sync, samples, filtered_groups)
        metrics.update(built.stats)  # truncated_frac
        metrics["step_s"] = time.perf_counter() - started
        metrics["prev_checkpoint_s"] = self._checkpoint_s  # (this step's checkpoint is written after the log line)
        self.logger.log(step, metrics)
        if step % cfg.loop.save_every == 0 or step == cfg.loop.steps:
            clock = time.perf_counter()
            self.checkpoint(step)
            self._checkpoint_s = time.perf_counter() - clock
        return metrics

    def rollout(self, step: int):
        """This step's batch: replayed from disk if a killed run had finished it (same weights made it), else
        collected now and saved before training."""
        saved = self.store.load(step)
        if saved is not None and saved[0].policy_version == self.version:
            batch, stream = saved
            restore_scheduler(self.scheduler, stream)
            batch.stats["replayed"] = 1
            return batch
        batch = self.scheduler.collect(policy_version=self.version)
        if self.cfg.loop.save_trajectories:
            self.store.save(step, batch, scheduler_state(self.scheduler))
        return batch

    def select(self, batch) -> tuple[list, int]:
        """The trajectories to train on; with filter_zero_variance_groups, groups whose rewards all agree go."""
        groups = [[t for t in g if not t.metadata.get("safety", {}).get("drop")] for g in batch.groups]
        groups = [g for g in groups if g]  # the safety policy drops trajectories (mining, reverse shells, ...)
        if not self.cfg.algorithm.filter_zero_variance_groups:
            return [t for g in groups for t in g], 0
        kept = [g for g in groups if len({t.reward for t in g}) > 1]
        return [t for g in kept for t in g], len(groups) - len(kept)

    def checkpoint(self, step: int) -> Path:
        state = {"policy_version": self.version, "scheduler": scheduler_state(self.scheduler), "evals": self.evals,
                 "config": self.cfg.model_dump(mode="json"), "lr_horizon": self.lr_horizon}
        return self.checkpoints.save(step, self.trainer.save_checkpoint, state)

    def step_metrics(self, batch, train: dict[str, Any], times: dict[str, float], sync: dict[str, float],
                     samples: list, filtered_groups: int) -> dict[str, Any]:
        stats = batch.stats
        episodes = max(1, stats.get("episodes", 0))
        metrics: dict[str, Any] = {
            "policy_version": self.version,
            "reward_mean": stats.get("mean_reward"), "success_rate": stats.get("success_rate"),
            "episode_turns": stats.get("mean_turns"), "episode_tokens": stats.get("completion_tokens", 0) / episodes,
            "episodes": stats.get("episodes"), "filtered_episodes": stats.get("filtered", 0),
            "dropped_groups": stats.get("dropped_groups", 0), "stale_dropped": stats.get("stale_dropped", 0),
            "zero_variance_groups_filtered": filtered_groups, "sequences": len(samples),
            "sample_staleness": (self.version - 1 - stats["min_sample_version"])
            if stats.get("min_sample_version") is not None else None,
            "rollout_tokens_per_s": stats.get("tokens_per_s"), "replayed": stats.get("replayed", 0),
            "resampled_episodes": stats.get("resampled_episodes", 0),
            "plain_success_rate": stats.get("plain_success_rate"),
            **times, **sync,
        }
        metrics.update(safety_panel(batch.trajectories))  # events by category, and what was done about them
        for key, value in train.items():
            metrics[key if key in ("loss", "grad_norm", "lr") or key.startswith(("train_", "logp_")) else
                    f"loss/{key}"] = value
        if "train_s" in times and times["train_s"] > 0:
            metrics["train_tokens_per_s"] = train.get("train_tokens", 0) / times["train_s"]
        metrics["chunk_mask_frac"] = train.get("chunk_mask_frac")
        metrics["clip_frac"] = train.get("clip_frac")
        metrics["ratio_mean"] = train.get("ratio_mean")
        metrics["ratio_max"] = train.get("ratio_max")
        return metrics

    # ---- the whole run ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        progress = Progress(cfg.loop.steps, f"RL {cfg.algorithm.name}", cfg.metrics.progress_bar,
                            start=self.start_step)
        try:
            for step in range(self.start_step + 1, cfg.loop.steps + 1):
                progress.update(self.step(step))
        finally:
            progress.close()
        self.scheduler.close()
        self.scheduler = None
        if cfg.loop.export_hf:
            self.trainer.save_hf(str(self.run_dir / "final_model"), tokenizer_source=str(self.model_path))
        if cfg.loop.eval_at_end:
            self.evals["final"] = self.evaluate("final")
        return self.summary()

    def evaluate(self, label: str):
        from roll.evaluate import evaluate_with_engines

        result = evaluate_with_engines(self.cfg, self.engines, self.model_path, label=f"{label} (v{self.version})",
                                       policy_version=self.version, output=self.run_dir / f"eval_{label}.jsonl")
        self.console.print(result.line())
        return result

    def summary(self) -> dict[str, Any]:
        from roll.evaluate import comparison_table, save_results

        out: dict[str, Any] = {"run_dir": str(self.run_dir), "steps": self.cfg.loop.steps}
        if self.evals:
            save_results(self.run_dir / "eval.json", self.evals)
            self.console.print(comparison_table(self.evals))
            out["eval"] = {k: v.as_dict() for k, v in self.evals.items()}
            self.logger.summary({f"eval/{k}_success_rate": v.success_rate for k, v in self.evals.items()})
        metrics = self.run_dir / "metrics.jsonl"
        rows = read_metrics(metrics) if metrics.exists() else []
        if rows:
            figure = plot_learning_curve(rows, self.run_dir / "learning_curve.png",
                                         {k: v.as_dict() for k, v in self.evals.items()}, title=self.cfg.run.name)
            self.console.print(f"learning curve (rollout success rate by step): {text_curve(rows)}")
            self.console.print(f"learning curve figure: {figure}")
            out["learning_curve"] = str(figure)
        return out

    def close(self) -> None:
        from roll.rollout.ray_setup import shutdown_ray

        for part in (self.scheduler, self.reference, self.trainer, self.engines):
            if part is not None:
                try:
                    (part.close if hasattr(part, "close") else part.shutdown)()
                except Exception as exc:  # noqa: BLE001 - keep closing the rest
                    self.console.print(f"[yellow]while closing {type(part).__name__}: {exc}[/yellow]")
        if self.logger is not None:
            self.logger.close()
        shutdown_ray(self._ray_started)


def train(cfg: RootConfig, run_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume, with cfg.loop.resume) the RL loop in `run_dir`; returns the summary (evaluations included)."""
    from roll.config.loader import save_config

    scoring_temperature(cfg.agent.sampling)  # sampling the trainer cannot score: refused before anything starts
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)  # the resolved config
    driver = RLDriver(cfg, run_dir, console)
    try:
        driver.setup()
        return driver.run()
    finally:
        driver.close()
