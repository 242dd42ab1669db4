"""The `roll` command line. Each command is one function taking Hydra overrides (`key=value`, `group=option`).

    roll rollout rollout.group_size=8 engine=hf task.split=eval

To add a command, define a function below (or import one) decorated with `@app.command(...)`, load its config with
`load_or_exit(<config name>, overrides)` (roll/cli_common.py) and keep its work in the package that owns it."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from roll.cli_common import CONFIG_DIR, OVERRIDES, err, load_or_exit
from roll.swebench.cli import attach as _attach_swebench
from roll.train_cli import register as _register_training

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ROLL: agentic RL training and rollouts.")


@app.callback()
def _root() -> None:
    """ROLL: agentic RL training and rollouts. Every command takes Hydra overrides (key=value, group=option)."""


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def rollout(overrides: Optional[list[str]] = OVERRIDES, config_dir: Optional[str] = CONFIG_DIR,
            config_name: str = typer.Option("rollout", "--config-name", help="primary config")) -> None:
    """Collect trajectories with the current policy; write them as JSON lines in the run directory."""
    cfg = load_or_exit(config_name, overrides, config_dir)
    from roll.rollout.runner import run_rollout

    summary = run_rollout(cfg, err)
    print(summary["trajectories"], file=sys.stdout)


_register_training(app)  # `train`, `sft`, `eval`: the training half (roll/train_cli.py)
_attach_swebench(app)  # `eval swebench`, `eval swebench-local` (roll/swebench/); `eval key=value` stays as above


def main() -> None:
    app()


if __name__ == "__main__":
    main()
