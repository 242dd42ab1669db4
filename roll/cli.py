"""The `roll` command line. Each command is one function taking Hydra overrides (`key=value`, `group=option`).

    roll rollout rollout.group_size=8 engine=hf task.split=eval

To add a command, define a function below (or import one) decorated with `@app.command(...)`, load its config with
`load_or_exit(<config name>, overrides)` and keep its work in the package that owns it."""
from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from roll.config import ConfigError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ROLL: agentic RL training and rollouts.")
err = Console(stderr=True)
OVERRIDES = typer.Argument(None, help="Hydra overrides: key=value or group=option", show_default=False)
CONFIG_DIR = typer.Option(None, "--config-dir", help="config tree (default: the repository's configs/)")


@app.callback()
def _root() -> None:
    """ROLL: agentic RL training and rollouts. Every command takes Hydra overrides (key=value, group=option)."""


def load_or_exit(config_name: str, overrides: Optional[list[str]], config_dir: Optional[str] = None):
    """The validated config, or one line on stderr and exit status 2."""
    try:
        return load_config(config_name, overrides or [], config_dir)
    except ConfigError as exc:
        err.print(f"[bold red]config error:[/bold red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def rollout(overrides: Optional[list[str]] = OVERRIDES, config_dir: Optional[str] = CONFIG_DIR,
            config_name: str = typer.Option("rollout", "--config-name", help="primary config")) -> None:
    """Collect trajectories with the current policy; write them as JSON lines in the run directory."""
    cfg = load_or_exit(config_name, overrides, config_dir)
    from roll.rollout.runner import run_rollout

    summary = run_rollout(cfg, err)
    print(summary["trajectories"], file=sys.stdout)


# `train`, `sft`, `eval`: the training half (roll/train_cli.py).
from roll.train_cli import register as _register_training  # noqa: E402

_register_training(app)

# `eval swebench`, `eval swebench-local`: SWE-bench evaluation (roll/swebench/); `eval key=value` stays as above.
from roll.swebench.cli import attach as _attach_swebench  # noqa: E402

_attach_swebench(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
