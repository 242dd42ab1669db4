"""`iflow`: the coding agent in a terminal. Interactive by default; one-shot with `-p "task"`."""
from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.syntax import Syntax

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.policy import OpenAIChatPolicy, PolicyAuthError, PolicyConnectionError, PolicyError, SamplingParams
from iflow.sessions import SessionStore
from iflow.settings import iflow_home, resolve_settings
from iflow.tools.base import ToolContext, ToolError
from iflow.tools.shell import workspace_diff
from iflow.trajectory import Trajectory
from iflow.ui import TerminalUI

app = typer.Typer(add_completion=False, help=__doc__)
console = Console(highlight=False)


class SandboxKind(str, enum.Enum):
    none = "none"
    docker = "docker"


class Approval(str, enum.Enum):
    default = "default"
    auto_edit = "auto-edit"
    yolo = "yolo"
    plan = "plan"


class ToolFormat(str, enum.Enum):
    auto = "auto"
    hermes = "hermes"
    native = "native"


class CliError(Exception):
    """A failure to report in one line (exit status 1)."""


def main() -> None:
    app()


@app.command()
def iflow(
    prompt: Annotated[str | None, typer.Option("-p", "--prompt", help="run this task once and exit")] = None,
    model: Annotated[str | None, typer.Option(help="model name (env IFLOW_MODEL)")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL (env IFLOW_BASE_URL)")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key (env IFLOW_API_KEY)")] = None,
    sandbox: Annotated[SandboxKind, typer.Option(help="none: work in the directory; docker: in a copy")] =
    SandboxKind.none,
    image: Annotated[str, typer.Option(help="sandbox image for --sandbox docker")] = "rock-default:0.1.0",
    approval_mode: Annotated[Approval, typer.Option(help="default | auto-edit | yolo | plan (read-only)")] =
    Approval.default,
    resume: Annotated[str | None, typer.Option("--resume", "-r", help="session id to continue, or 'latest'")] = None,
    list_sessions: Annotated[bool, typer.Option("--list-sessions", help="list saved sessions and exit")] = False,
    workspace: Annotated[Path, typer.Option(help="the directory to work in")] = Path("."),
    session_dir: Annotated[Path | None, typer.Option(help="where sessions are saved (default ~/.iflow/sessions)")] =
    None,
    max_turns: Annotated[int, typer.Option(min=1, help="turns per request")] = 50,
    max_context_tokens: Annotated[int, typer.Option(min=256, help="prompt budget")] = 32768,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens per model reply")] = 4096,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.2,
    seed: Annotated[int | None, typer.Option()] = None,
    command_timeout: Annotated[float, typer.Option(help="seconds per command")] = 120.0,
    tokenizer: Annotated[Path | None, typer.Option(help="local HF tokenizer to count tokens exactly")] = None,
    tool_format: Annotated[ToolFormat, typer.Option(help="auto | hermes (<tool_call> text) | native")] =
    ToolFormat.auto,
    until_submit: Annotated[bool, typer.Option(help="keep going until submit (a reply without a tool call is an "
                                                    "error, as in training)")] = False,
    apply: Annotated[bool | None, typer.Option("--apply/--no-apply", help="docker: apply the diff without asking")]
    = None,
    agent_config: Annotated[Path | None, typer.Option(help="an AgentConfig JSON file (limits, sampling, context, "
                                                           "tools, prompt: what training runs the agent with); it "
                                                           "replaces --max-turns, --max-context-tokens, --max-tokens, "
                                                           "--temperature, --seed, --command-timeout, "
                                                           "--approval-mode and --until-submit")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    store = SessionStore(session_dir or iflow_home() / "sessions")
    if list_sessions:
        for path in store.list():
            console.print(path.stem)
        return
    try:
        code = asyncio.run(_session(locals(), store))
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except CliError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("\ninterrupted")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


async def _session(options: dict[str, Any], store: SessionStore) -> int:
    settings = resolve_settings({name: options[name] for name in ("model", "base_url", "api_key")})
    if not settings.model:
        raise ValueError("no model: pass --model, set IFLOW_MODEL, or put modelName in ~/.iflow/settings.json")
    resumed = store.load(options["resume"]) if options["resume"] else None
    native = {ToolFormat.auto: None, ToolFormat.hermes: False, ToolFormat.native: True}[options["tool_format"]]
    policy = OpenAIChatPolicy(settings.base_url, settings.model, settings.api_key, native_tools=native)
    try:
        await policy.list_models()  # fail early, and clearly, on a wrong address or key
    except (PolicyConnectionError, PolicyAuthError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        await policy.aclose()
        return 1
    except PolicyError:
        pass  # a server without /models can still chat
    if options["agent_config"]:
        config = AgentConfig.model_validate_json(Path(options["agent_config"]).read_text())
    else:
        config = AgentConfig(
            max_turns=options["max_turns"], command_timeout=options["command_timeout"],
            sampling=SamplingParams(temperature=options["temperature"], max_tokens=options["max_tokens"],
                                    seed=options["seed"]),
            context=ContextConfig(max_context_tokens=options["max_context_tokens"]),
            approval_mode=options["approval_mode"].value, text_answer_ends_episode=not options["until_submit"])
    counter = None
    if options["tokenizer"]:
        counter = _token_counter(Path(options["tokenizer"]))
    workspace = Path(options["workspace"]).expanduser().resolve()
    ui = TerminalUI(console, verbose=options["verbose"])
    sandbox = None
    try:
        if options["sandbox"] is SandboxKind.docker:
            from iflow.workspace import populate_sandbox
            from rock import AsyncSandbox, SandboxConfig

            console.print(f"starting a sandbox from {options['image']} with a copy of {workspace} ...")
            try:
                sandbox = await AsyncSandbox(SandboxConfig(image=options["image"],
                                                           command_timeout=options["command_timeout"])).start()
                backend = await populate_sandbox(sandbox, workspace)
            except (ValueError, OSError) as exc:
                raise CliError(f"cannot prepare the docker sandbox: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - engine or image problems: say so in one line
                raise CliError(f"cannot start the docker sandbox ({type(exc).__name__}): {exc}") from None
        else:
            backend = LocalBackend(workspace, command_timeout=options["command_timeout"])

        async def save_turn(turn, trajectory: Trajectory) -> None:
            store.save(trajectory)

        agent = Agent(policy, backend, config, on_turn_end=save_turn, approver=ui.approve, observer=ui,
                      counter=counter)
        metadata = {"workspace": str(workspace), "sandbox": options["sandbox"].value, "model": settings.model,
                    "base_url": settings.base_url}
        return await _converse(agent, options, store, resumed, metadata, ui, sandbox is not None, workspace)
    finally:
        if sandbox is not None:
            await sandbox.stop()
        elif "backend" in locals():
            await backend.close()
        await policy.aclose()


def _token_counter(path: Path):
    """Exact token counts from a local Hugging Face tokenizer (the one the server uses)."""
    from transformers import AutoTokenizer

    from iflow.tokens import TokenizerCounter

    return TokenizerCounter(AutoTokenizer.from_pretrained(str(path)))


async def _converse(agent: Agent, options: dict[str, Any], store: SessionStore, trajectory: Trajectory | None,
                    metadata: dict[str, Any], ui: TerminalUI, in_sandbox: bool, workspace: Path) -> int:
    one_shot = options["prompt"] is not None
    if not one_shot:
        console.print(f"[bold]iflow[/bold] · {metadata['model']} at {metadata['base_url']} · {workspace} · "
                      f"{options['approval_mode'].value} mode · /exit to quit")
    while True:
        if one_shot:
            text = options["prompt"]
        else:
            line = ui.ask("\n> ")
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
        trajectory = await agent.run(text, resume=trajectory, metadata=metadata)
        path = store.save(trajectory)
        if in_sandbox:
            await _offer_diff(agent, trajectory, store, options, ui, workspace, one_shot)
        console.print(f"[dim]session saved to {path} (resume: iflow --resume {trajectory.id})[/dim]")
        if one_shot:
            return 1 if trajectory.outcome == "error" else 0
    return 0


async def _offer_diff(agent: Agent, trajectory: Trajectory, store: SessionStore, options: dict[str, Any],
                      ui: TerminalUI, workspace: Path, one_shot: bool) -> None:
    from iflow.workspace import apply_patch, commit_baseline

    try:
        diff = await workspace_diff(ToolContext(agent.backend))
    except ToolError as exc:
        console.print(f"[red]no diff to apply: {exc}[/red]")
        return
    if not diff:
        return
    patch_path = store.directory / f"{trajectory.id}.patch"
    patch_path.write_text(diff)
    console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    decision = options["apply"]
    if decision is None and not one_shot:
        answer = ui.ask(f"Apply these changes to {workspace}? [y/N] ")
        decision = bool(answer) and answer.strip().lower() in ("y", "yes")
    if not decision:
        console.print(f"[dim]not applied; the patch is at {patch_path}[/dim]")
        return
    try:
        apply_patch(diff, workspace)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red] (the patch is at {patch_path})")
        return
    await commit_baseline(agent.backend, "iflow applied")
    console.print(f"[green]applied to {workspace}[/green]")
