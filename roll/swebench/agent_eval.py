"""The checkpoint path of `roll eval swebench`: run the iFlow agent with the checkpoint on roll's rollout stack
(vLLM engine actors, env workers, ROCK sandboxes from each instance's image) over the instances as tasks whose
verifier grades the agent's diff in a fresh container (roll/swebench/rl.py), then record the predictions.

Each of the k runs is a task per instance (`<instance_id>@<run_id>`); predictions go to
`<log_root>/<run_id>/<model>/predictions.jsonl`. A re-run with the same run id runs the agent only for instances
that have no prediction yet."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from roll.swebench.dataset import SWEInstance
from roll.swebench.predictions import Prediction, append_prediction, read_predictions
from roll.swebench.rl import task_record

# Agent limits for SWE tasks (the roll defaults are sized for the tiny test model); --set overrides any of them.
SWE_AGENT_DEFAULTS = ("agent.max_turns=100", "agent.max_total_tokens=null", "agent.max_wall_seconds=3600",
                      "agent.command_timeout=300", "agent.sampling.max_tokens=4096",
                      "agent.context.max_context_tokens=32768", "agent.context.max_observation_tokens=4096",
                      "engine.max_model_len=40960")


def model_name_for(options: Any) -> str:
    return options.model_name or Path(str(options.model)).resolve().name


def predictions_file(options: Any, run_id: str) -> Path:
    return Path(options.log_root) / run_id / model_name_for(options).replace("/", "__") / "predictions.jsonl"


def existing(options: Any, run_id: str) -> dict[str, Prediction]:
    path = predictions_file(options, run_id)
    return {p.instance_id: p for p in read_predictions(path)} if path.is_file() else {}


def rollout_overrides(options: Any, tasks_file: Path, count: int, run_dir: Path, first_image: str) -> list[str]:
    return ["model=local", f"model.path={options.model}", "task=jsonl", f"task.path={tasks_file}",
            "task.shuffle=false", "task.split=eval", f"sandbox.image={first_image}", "sandbox.user=root",
            "sandbox.workdir=/testbed", f"sandbox.memory={options.memory}", f"sandbox.cpus={options.cpus}",
            "sandbox.pids_limit=4096", "sandbox.command_timeout=300", *SWE_AGENT_DEFAULTS,
            f"agent.sampling.temperature={options.temperature}", f"agent.sampling.top_p={options.top_p}",
            f"agent.sampling.top_k={options.top_k}", "rollout.group_size=1", f"rollout.groups_per_step={count}",
            "rollout.num_steps=1", "rollout.staleness=0", "rollout.filter.enabled=false",
            f"rollout.max_concurrency={max(1, options.workers)}", "rollout.pool_size=1",
            f"rollout.progress={'true' if options.show_progress else 'false'}", f"run.dir={run_dir}",
            *options.agent_overrides]


def agent_predictions(instances: list[SWEInstance], run_ids: list[str], options: Any,
                      console: Console) -> dict[str, list[Prediction]]:
    from roll.config import load_config
    from roll.rollout.records import read_records
    from roll.rollout.runner import run_rollout
    from roll.tasks.dataset import write_tasks

    model = model_name_for(options)
    done = {rid: existing(options, rid) for rid in run_ids}
    images = options.images()
    tasks = [task_record(i, images, task_id=f"{i.instance_id}@{rid}", split="eval", eval_timeout=options.timeout,
                         log_root=options.log_root, run_id=rid, model=model)
             for rid in run_ids for i in instances if i.instance_id not in done[rid]]
    if tasks:
        base = Path(options.log_root) / run_ids[0]
        tasks_file = write_tasks(tasks, base / "agent_tasks.jsonl")
        run_dir = base / "rollout"
        if run_dir.exists():
            run_dir = base / f"rollout-{len(list(base.glob('rollout*')))}"
        console.print(f"running the agent on {len(tasks)} task(s) with {options.model}")
        cfg = load_config("rollout", rollout_overrides(options, tasks_file, len(tasks), run_dir, tasks[0].image))
        summary = run_rollout(cfg, console)
        for trajectory in read_records(summary["trajectories"]):
            info = trajectory.reward_info or {}
            if "model_patch" not in info:
                status = trajectory.metadata.get("status")
                console.print(f"[yellow]no prediction[/yellow] for {trajectory.task_id} ({status}: "
                              f"{trajectory.metadata.get('status_error', '')}); a re-run will try it again")
                continue
            iid, _, rid = trajectory.task_id.partition("@")
            prediction = Prediction(instance_id=iid, model_name_or_path=model, model_patch=info["model_patch"])
            append_prediction(predictions_file(options, rid), prediction)
            done[rid][iid] = prediction
    return {rid: list(done[rid].values()) for rid in run_ids}
