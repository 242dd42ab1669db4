"""The training commands of `roll`: `train` (the RL loop), `sft` (warm start on golden trajectories), `eval`
(held-out evaluation of a checkpoint). Registered on the typer app of roll/cli.py by `register(app)`.

    roll sft  run.dir=runs/demo/sft                       # scripted-expert data unless sft.data=[file.jsonl,...]
    roll train model=local model.path=runs/demo/sft/sft_model algorithm=ipa loop.steps=8
    roll train resume=latest run.dir=runs/demo/rl         # or resume=<run dir | checkpoint dir>
    roll eval model=local model.path=runs/demo/rl/final_model eval.num_tasks=64
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from roll.cli_common import CONFIG_DIR, OVERRIDES, err, load_or_exit
from roll.evaluate import paired_comparison
from roll.models.resolve import resolve_model_path

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _env_defaults() -> None:
    for key, value in {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}.items():
        os.environ.setdefault(key, value)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def split_resume(overrides: list[str]) -> tuple[str | None, list[str]]:
    """`resume=X` (sugar for loop.resume=X) taken out of the overrides."""
    resume, rest = None, []
    for item in overrides:
        if item.startswith(("resume=", "loop.resume=")):
            resume = item.split("=", 1)[1] or None
        else:
            rest.append(item)
    return resume, rest


def resume_config(resume: str, overrides: list[str], run_dir: str | None):
    """The saved config of the run being resumed, with `key=value` overrides applied on top (e.g. loop.steps=20)."""
    from omegaconf import OmegaConf

    from roll.config import ConfigError, load_saved_config, validate
    from roll.trainer.checkpoint import resolve_resume

    base = run_dir or (None if resume == "latest" else resume)
    if base is None:
        _fail("resume=latest needs run.dir=<the run directory>")
    try:
        checkpoint = resolve_resume(resume, base)
    except FileNotFoundError as exc:
        _fail(str(exc))
    directory = checkpoint.parent.parent  # <run>/checkpoints/step_N
    if any("=" not in o or o.split("=", 1)[0].count(".") == 0 for o in overrides if not o.startswith("run.dir=")):
        _fail("when resuming, only dotted key=value overrides apply (config groups are fixed by the saved run)")
    try:
        saved = load_saved_config(directory)
        merged = OmegaConf.merge(OmegaConf.create(saved.model_dump(mode="json")),
                                 OmegaConf.from_dotlist([o for o in overrides if not o.startswith("run.dir=")]))
        data: Any = OmegaConf.to_container(merged, resolve=True)
        data["loop"]["resume"] = str(checkpoint)
        data["run"]["dir"] = str(directory)
        return validate(data)
    except ConfigError as exc:
        _fail(f"config error: {exc}")


def register(app: typer.Typer) -> None:
    @app.command(context_settings=EXTRA)
    def train(overrides: list[str] | None = OVERRIDES, config_dir: str | None = CONFIG_DIR,
              config_name: str = typer.Option("train", "--config-name", help="primary config")) -> None:
        """RL: roll out -> old log-probs -> IPA (or grpo/gspo/ppo/reinforce) update -> push weights -> log ->
        checkpoint; held-out evaluation of the start and the result at the end."""
        _env_defaults()
        from roll.config import prepare_run_dir
        from roll.driver import train as run_train

        resume, rest = split_resume(list(overrides or []))
        if resume:
            run_dir = next((o.split("=", 1)[1] for o in rest if o.startswith("run.dir=")), None)
            cfg = resume_config(resume, rest, run_dir)
        else:
            cfg = load_or_exit(config_name, rest, config_dir)
        from roll.config import ConfigError
        from roll.trainer.update import scoring_temperature

        try:
            scoring_temperature(cfg.agent.sampling)  # top-p / top-k / greedy: the trainer cannot score them
        except ConfigError as exc:
            _fail(f"config error: {exc}")
        from roll.safety import TelemetryRequired, require_telemetry

        try:
            require_telemetry(cfg.rollout.safety)
        except TelemetryRequired as exc:
            _fail(str(exc))
        directory = prepare_run_dir(cfg)
        err.print(f"[bold]run directory[/bold] {directory}")
        summary = run_train(cfg, directory, err)
        evals = summary.get("eval", {})
        if "start" in evals and "final" in evals:
            s, f = evals["start"], evals["final"]
            err.print(f"held-out success: start {s['solved']}/{s['total']} -> RL {f['solved']}/{f['total']}")
            err.print(paired_comparison(s.get("per_task", {}), f.get("per_task", {})).line())
        print(directory, file=sys.stdout)

    @app.command(context_settings=EXTRA)
    def sft(overrides: list[str] | None = OVERRIDES, config_dir: str | None = CONFIG_DIR,
            config_name: str = typer.Option("sft", "--config-name", help="primary config")) -> None:
        """SFT warm start on golden trajectories with error masking; prints the HF checkpoint directory."""
        _env_defaults()
        from roll.config import prepare_run_dir

        cfg = load_or_exit(config_name, list(overrides or []), config_dir)
        directory = prepare_run_dir(cfg)
        err.print(f"[bold]run directory[/bold] {directory}")
        output = run_sft_command(cfg, directory)
        print(output, file=sys.stdout)

    @app.command(name="eval", context_settings=EXTRA)
    def eval_(overrides: list[str] | None = OVERRIDES, config_dir: str | None = CONFIG_DIR,
              config_name: str = typer.Option("train", "--config-name", help="primary config")) -> None:
        """Evaluate a checkpoint (model.path) on held-out instances of the task family; prints solved/total. With
        run.dir set, the trajectories go to RUN_DIR/eval_trajectories.jsonl and the result to RUN_DIR/eval.json."""
        _env_defaults()
        from roll.evaluate import comparison_table, evaluate_checkpoint, save_results

        cfg = load_or_exit(config_name, list(overrides or []), config_dir)
        directory = Path(cfg.run.dir) if cfg.run.dir else None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        result = evaluate_checkpoint(cfg, output=directory / "eval_trajectories.jsonl" if directory else None)
        if directory is not None:
            save_results(directory / "eval.json", {"eval": result})
        err.print(comparison_table({"eval": result}))
        print(f"{result.solved}/{result.total}", file=sys.stdout)


def run_sft_command(cfg, directory: Path) -> Path:
    """Golden data (given files, or the scripted expert in real sandboxes), then `roll.sft.run_sft`."""
    from transformers import AutoTokenizer

    from roll.rollout.ray_setup import init_ray, shutdown_ray
    from roll.sft import load_trajectories, run_sft

    model_path = resolve_model_path(cfg.model)
    files = list(cfg.sft.data)
    if not files:
        from roll.tasks.golden import write_golden

        golden = Path(directory) / "golden.jsonl"
        with err.status(f"scripted expert: {cfg.sft.expert_episodes} golden episodes"):
            report = write_golden(golden, cfg.sft.expert_episodes, seed=cfg.task.seed + 1000,
                                  model_path=model_path, options=cfg.task.options, agent=cfg.agent,
                                  sandbox=cfg.sandbox, progress=False,
                                  shortcut_fraction=cfg.sft.shortcut_fraction)
        err.print(f"golden trajectories: {report['written']} written ({report['shortcuts']} by the privileged "
                  f"expert), {report['failed']} failed -> {golden}")
        files = [str(golden)]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    started = init_ray(cfg.ray)
    try:
        return run_sft(model_path=model_path, trajectories=load_trajectories(files), sft=cfg.sft,
                       trainer=cfg.trainer, metrics=cfg.metrics, run_dir=directory, pad_id=pad_id,
                       config_dump=cfg.model_dump(mode="json"))
    finally:
        shutdown_ray(started)
