"""What every `roll` command shares: the stderr console, the override arguments, and config loading that ends in one
line and exit status 2 on a bad config. Imported by roll/cli.py and the command modules it registers."""
from __future__ import annotations

import typer
from rich.console import Console

from roll.config import ConfigError, RootConfig, load_config

err = Console(stderr=True)
OVERRIDES = typer.Argument(None, help="Hydra overrides: key=value or group=option", show_default=False)
CONFIG_DIR = typer.Option(None, "--config-dir", help="config tree (default: the repository's configs/)")


def load_or_exit(config_name: str, overrides: list[str] | None, config_dir: str | None = None) -> RootConfig:
    """The validated config, or one line on stderr and exit status 2."""
    try:
        return load_config(config_name, overrides or [], config_dir)
    except ConfigError as exc:
        err.print(f"[bold red]config error:[/bold red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
