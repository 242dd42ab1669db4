"""`rock`: build images, list and collect sandboxes, run commands in a sandbox, open a shell."""
from __future__ import annotations

import functools
import subprocess
import sys
import time
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from rock import images
from rock.config import DEFAULT_IMAGE, SandboxConfig
from rock.engine import EngineUnavailable, client as docker_client
from rock.reaper import MANAGED, QUARANTINE_PREFIX, owner_alive, reap
from rock.sandbox import Sandbox, SandboxError

app = typer.Typer(help="ROCK: hardened Docker sandboxes for agents.", no_args_is_help=True, add_completion=False)
image_app = typer.Typer(help="Sandbox images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
console = Console()
err = Console(stderr=True)


def friendly(fn):
    """One clear line instead of a traceback for the errors a user can fix."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (EngineUnavailable, SandboxError, images.ImageBuildError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2)
    return wrapper


@image_app.command("build")
@friendly
def image_build(recipe: str = typer.Option("default", help="folder under docker/"),
                tag: str = typer.Option(DEFAULT_IMAGE), mirror: Optional[str] = typer.Option(None),
                if_missing: bool = typer.Option(False, "--if-missing", help="do nothing if the tag exists")) -> None:
    """Build a sandbox image offline from Debian packages (debootstrap) and its Dockerfile."""
    with console.status(f"building {tag}"):
        images.build(recipe, tag, mirror, if_missing, log=lambda msg: console.log(msg))
    console.print(f"[green]ready:[/green] {tag}")


@image_app.command("ls")
@friendly
def image_ls() -> None:
    """List rock images."""
    table = Table("tag", "id", "size (MB)", "created")
    for row in images.list_images():
        table.add_row(row["tag"], row["id"], row["size_mb"], row["created"])
    console.print(table)


@app.command()
@friendly
def ps(all: bool = typer.Option(False, "--all", "-a", help="include stopped (quarantined) sandboxes")) -> None:
    """List sandboxes with their owner and state."""
    table = Table("name", "image", "status", "owner pid", "owner alive", "age (s)")
    for c in docker_client().containers.list(all=all, filters={"label": MANAGED}, ignore_removed=True):
        age = time.time() - float(c.labels.get("rock.created", "0") or 0)
        image = c.image.tags[0] if c.image.tags else c.image.short_id
        status = "quarantined" if c.name.startswith(QUARANTINE_PREFIX) else c.status
        table.add_row(c.name, image, status, c.labels.get("rock.owner.pid", "?"),
                      "yes" if owner_alive(c.labels) else "no", f"{age:.0f}")
    console.print(table)


@app.command()
@friendly
def gc(older_than: Optional[float] = typer.Option(None, help="also remove sandboxes older than this (seconds)")) -> None:
    """Remove sandboxes whose owner process is gone (quarantined ones are kept)."""
    removed = reap(older_than=older_than)
    console.print(f"removed {len(removed)} sandbox(es)" + (": " + ", ".join(removed) if removed else ""))


def _config(image: str, network: str, memory: str, cpus: float) -> SandboxConfig:
    return SandboxConfig(image=image, network_mode=network, memory=memory, cpus=cpus)


@app.command("exec")
@friendly
def exec_(command: list[str] = typer.Argument(..., help="command to run (quote it or put it after --)"),
          image: str = typer.Option(DEFAULT_IMAGE), network: str = typer.Option("none"),
          memory: str = typer.Option("1g"), cpus: float = typer.Option(1.0),
          timeout: float = typer.Option(60.0), sandbox: Optional[str] = typer.Option(None, help="existing sandbox")) -> None:
    """Run one command in a fresh sandbox (or an existing one) and exit with its status."""
    line = " ".join(command)
    if sandbox:
        proc = subprocess.run(["docker", "exec", sandbox, "bash", "-lc", line], timeout=timeout)
        raise typer.Exit(proc.returncode)
    with Sandbox(_config(image, network, memory, cpus)) as sb:
        result = sb.run(line, timeout=timeout)
    sys.stdout.write(result.output)
    if result.timed_out:
        err.print(f"[yellow]timed out after {timeout:.0f}s[/yellow]")
        raise typer.Exit(124)
    raise typer.Exit(result.exit_code or 0)


@app.command()
@friendly
def shell(image: str = typer.Option(DEFAULT_IMAGE), network: str = typer.Option("none"),
          memory: str = typer.Option("1g"), cpus: float = typer.Option(1.0),
          sandbox: Optional[str] = typer.Option(None, help="attach to an existing sandbox")) -> None:
    """An interactive bash in a fresh (removed on exit) or existing sandbox."""
    if sandbox:
        raise typer.Exit(subprocess.call(["docker", "exec", "-it", sandbox, "bash"]))
    with Sandbox(_config(image, network, memory, cpus)) as sb:
        console.print(f"[dim]sandbox {sb.name} ({image}); exit to remove it[/dim]")
        code = subprocess.call(["docker", "exec", "-it", sb.name, "bash"])
    raise typer.Exit(code)


@app.command()
def audit(path: str = typer.Argument(..., help="a run directory or a trajectories .jsonl file"),
          category: Optional[str] = typer.Option(None, help="prefix, e.g. network or compute.mining"),
          severity: Optional[str] = typer.Option(None, help="minimum: low, medium, high, critical"),
          trajectory: Optional[str] = typer.Option(None, help="one trajectory id"),
          events_: bool = typer.Option(False, "--events", help="list the episodes behind each event (trajectory, "
                                                                "turn, command) instead of the per-step table"),
          as_json: bool = typer.Option(False, "--json", help="export the events as JSON lines")) -> None:
    """A run's security events: a per-step table (step x category counts) for a run directory, or with --events
    (and for files that are not a step's) each event with the trajectory, turn and command that caused it."""
    from pathlib import Path

    from rock.telemetry.audit import counts_by_step, iter_events, run_steps, select

    if not Path(path).exists():
        err.print(f"[red]error:[/red] {path} does not exist")
        raise typer.Exit(2)
    events = select(iter_events(path), category, severity, trajectory)
    if as_json:
        import json

        for event in events:
            sys.stdout.write(json.dumps(event) + "\n")
        return
    steps, categories, counts = counts_by_step(events)
    steps = sorted(set(steps) | set(run_steps(path)))
    if steps and not events_:
        table = Table("step", *categories, "total", title="security events per step")
        for step in steps:
            row = [counts.get((step, c), 0) for c in categories]
            table.add_row(str(step), *map(str, row), str(sum(row)))
        console.print(table)
        console.print(f"{len(events)} event(s) over {len(steps)} step(s); --events lists the episodes behind them")
        return
    table = Table("step", "trajectory", "turn", "category", "severity", "rule", "what", "command")
    for e in events:
        table.add_row(str(e["step"]) if e.get("step") is not None else "-", str(e.get("trajectory") or "-"),
                      str(e.get("turn", "-")), e["category"], e["severity"], e["rule"], e.get("message", "")[:60],
                      (e.get("command") or "")[:50])
    console.print(table)
    console.print(f"{len(events)} event(s)")


@app.command()
def tracer(action: str = typer.Argument("status", help="start | stop | status")) -> None:
    """The host eBPF tracer that serves every sandbox on this machine."""
    import time

    from rock.telemetry.spool import read_heartbeat
    from rock.telemetry.tracer import SPOOL, ensure_tracer, stop_tracer, tracer_alive, tracer_pid

    if action == "start":
        status = ensure_tracer()
        console.print(status.model_dump())
        raise typer.Exit(0 if status.mode == "ebpf" else 1)
    if action == "stop":
        console.print("stopped" if stop_tracer() else "no tracer running")
        return
    pid = tracer_pid()
    if pid is None:
        console.print("no tracer running")
        raise typer.Exit(1)
    beat = read_heartbeat(SPOOL) or {}
    alive = tracer_alive()
    lag = time.time() - float(beat.get("watermark", 0.0))
    console.print(f"tracer {'alive' if alive else 'NOT RESPONDING'} (pid {pid}): output {lag * 1000:.0f} ms behind, "
                  f"{beat.get('lost', 0)} event(s) lost, {beat.get('dropped', 0)} unclaimed record(s)")
    raise typer.Exit(0 if alive else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
