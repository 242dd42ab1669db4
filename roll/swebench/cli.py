"""Command line: `roll eval swebench ...` and `roll eval swebench-local ...`.

`attach(app)` puts them under `roll eval` without disturbing the held-out evaluation that `roll eval` already runs:
`eval` becomes a group whose unknown first arguments (Hydra overrides such as `model=local`) go to that command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from roll.swebench.constants import DEFAULT_LOG_ROOT, DEFAULT_NAMESPACE, PAPER_SAMPLING

err = Console(stderr=True)
HELDOUT = "heldout"


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _ids(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in value.replace(",", " ").split() if part]


def swebench(
    dataset: str = typer.Option(..., "--dataset", "-d", help="a .json/.jsonl/.parquet file in the official schema, "
                                "`local` (the shipped local set), or a Hugging Face name/alias (needs network)"),
    predictions: str | None = typer.Option(None, "--predictions", "-p", help="predictions file (.json/.jsonl) "
                                              "or `gold` for the dataset's own patches"),
    model: str | None = typer.Option(None, "--model", "-m", help="a Hugging Face checkpoint: run the iFlow agent "
                                        "with a vLLM engine on every instance, then evaluate"),
    run_id: str = typer.Option(..., "--run-id", help="names the run; re-running it skips finished instances"),
    instance_ids: list[str] | None = typer.Option(None, "--instance-ids", "-i", help="only these (repeat, or "
                                                     "comma/space separated)"),
    split: str = typer.Option("test", "--split"),
    workers: int = typer.Option(1, "--workers", "-w", help="instances evaluated (or agents run) at once"),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds for one instance's tests"),
    k: int = typer.Option(1, "--k", help="runs per instance; Pass@1 is the mean resolved rate over them"),
    temperature: float = typer.Option(PAPER_SAMPLING["temperature"], "--temperature"),
    top_p: float = typer.Option(PAPER_SAMPLING["top_p"], "--top-p"),
    top_k: int = typer.Option(PAPER_SAMPLING["top_k"], "--top-k"),
    model_name: str | None = typer.Option(None, "--model-name", help="model_name_or_path of the predictions "
                                             "(default: the checkpoint folder's name)"),
    log_dir: Path = typer.Option(DEFAULT_LOG_ROOT, "--log-dir", help="per-instance folders: "
                                 "<log-dir>/<run-id>/<model>/<instance>/"),
    report_dir: Path = typer.Option(Path("."), "--report-dir", help="where <model>.<run-id>.json goes"),
    namespace: str = typer.Option(DEFAULT_NAMESPACE, "--namespace", help="registry namespace of the official image "
                                  "names; `none` for local names (sweb.eval.x86_64.<id>:latest)"),
    image_template: str | None = typer.Option(None, "--image-template", help="image name pattern overriding "
                                                 "rows and namespace, e.g. 'myreg/{id_1776}:v1'"),
    memory: str = typer.Option("8g", "--memory", help="memory limit of each container"),
    cpus: float = typer.Option(2.0, "--cpus", help="CPU quota of each container"),
    network: str = typer.Option("none", "--network", help="network of the evaluation containers"),
    build_local_images: bool = typer.Option(False, "--build-local-images", help="build missing local-set images "
                                            "first (offline; sdists from the package index)"),
    overrides: list[str] | None = typer.Option(None, "--set", help="roll config override for the agent run "
                                                  "(repeat), e.g. --set agent.max_turns=40"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Evaluate predictions or a checkpoint on SWE-bench (official harness semantics); prints the summary path."""
    from roll.config import ConfigError
    from roll.swebench.command import CommandError, SWEBenchOptions, run_swebench
    from roll.swebench.dataset import DatasetError
    from roll.swebench.specs import SpecError

    options = SWEBenchOptions(dataset=dataset, run_id=run_id, predictions=predictions, model=model,
                              model_name=model_name, split=split, instance_ids=_ids(instance_ids), workers=workers,
                              timeout=timeout, k=k, temperature=temperature, top_p=top_p, top_k=top_k,
                              log_root=log_dir, report_dir=report_dir, namespace=namespace,
                              image_template=image_template, memory=memory, cpus=cpus, network=network,
                              build_local_images=build_local_images, agent_overrides=list(overrides or []),
                              show_progress=not quiet)
    try:
        summary = run_swebench(options, err)
    except (CommandError, DatasetError, SpecError) as exc:
        _fail(str(exc))
    except ConfigError as exc:
        _fail(f"agent run config: {exc}")
    for run in summary["runs"]:
        print(run["report_path"], file=sys.stdout)
    if summary["average"]:
        print(summary["average"]["path"], file=sys.stdout)


local_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="The local SWE-style set (docker/swebench-local/): build images, remake, export tasks.")


@local_app.command("build")
def local_build(instance_ids: list[str] | None = typer.Option(None, "--instance-ids", "-i"),
                force: bool = typer.Option(False, "--force", help="rebuild even if the image exists")) -> None:
    """Build the local set's images offline (sdists from the package index; cached by tag)."""
    from roll.swebench.local.catalog import local_instances
    from roll.swebench.local.images import build_images

    instances = local_instances(_ids(instance_ids) or None)
    images = build_images(instances, force=force, log=lambda m: err.print(f"  {m}"))
    for iid, tag in images.items():
        print(f"{iid}\t{tag}")


@local_app.command("make")
def local_make(instance_ids: list[str] | None = typer.Option(None, "--instance-ids", "-i"),
               timeout: float = typer.Option(600.0, "--timeout")) -> None:
    """Remake instances from mutations.yaml: patches, images, and FAIL_TO_PASS / PASS_TO_PASS by running the tests."""
    from roll.swebench.local.make import make_local_set

    rows = make_local_set(_ids(instance_ids) or None, timeout=timeout, log=lambda m: err.print(f"  {m}"))
    print(f"{len(rows)} instances", file=sys.stdout)


@local_app.command("tasks")
def local_tasks(output: Path = typer.Argument(..., help="task file to write (JSON lines of roll TaskRecords)"),
                dataset: str = typer.Option("local", "--dataset", "-d"),
                split: str = typer.Option("train", "--split", help="the records' metadata.split"),
                namespace: str = typer.Option("none", "--namespace")) -> None:
    """Export instances as roll RL tasks (reward = resolved; tests hidden until grading)."""
    from roll.swebench.command import SWEBenchOptions
    from roll.swebench.dataset import load_instances
    from roll.swebench.local.catalog import resolve_dataset
    from roll.swebench.rl import task_record
    from roll.tasks.dataset import write_tasks

    images = SWEBenchOptions(dataset=dataset, run_id="x", namespace=namespace).images()
    instances = load_instances(resolve_dataset(dataset), "test")
    write_tasks([task_record(i, images, split=split) for i in instances], output)
    print(output, file=sys.stdout)


class EvalGroup(TyperGroup):
    """`roll eval <subcommand> ...`, or `roll eval key=value ...` for the held-out evaluation."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            return HELDOUT, self.commands[HELDOUT], args
        return super().resolve_command(ctx, args)


def attach(app: typer.Typer) -> None:
    """Turn the `eval` command of `app` (if any) into a group holding it plus `swebench` and `swebench-local`."""
    found = [info for info in app.registered_commands if (info.name or getattr(info.callback, "__name__", "")) in (
        "eval", "eval_")]
    eval_app = typer.Typer(cls=EvalGroup, add_completion=False, invoke_without_command=True, no_args_is_help=False,
                           context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                           help="Evaluate: `roll eval key=value ...` runs the held-out evaluation of the task "
                                "family; `roll eval swebench ...` runs SWE-bench.")
    heldout = found[0] if found else None
    if heldout is not None:
        app.registered_commands.remove(heldout)
        eval_app.command(HELDOUT, help=heldout.help or (heldout.callback.__doc__ or ""),
                         context_settings=heldout.context_settings)(heldout.callback)

        @eval_app.callback()
        def _default(ctx: typer.Context) -> None:
            if ctx.invoked_subcommand is None:
                ctx.invoke(heldout.callback, overrides=[], config_dir=None, config_name="train")
    eval_app.command("swebench")(swebench)
    eval_app.add_typer(local_app, name="swebench-local")
    app.add_typer(eval_app, name="eval")


def main() -> None:
    """Stand-alone entry: `python -m roll.swebench.cli swebench ...`."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    app.command("swebench")(swebench)
    app.add_typer(local_app, name="swebench-local")
    app()


if __name__ == "__main__":
    main()
