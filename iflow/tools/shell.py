"""Shell tools: bash (the model's persistent session), search (grep / find), submit (the workspace's git diff)."""
from __future__ import annotations

import secrets
import shlex
from typing import Any

from iflow.backends.base import DEFAULT_SESSION, FileTooLarge
from iflow.tools.base import Tool, ToolContext, ToolError, ToolResult, object_schema, path_operand

MAX_SEARCH_RESULTS = 100
MAX_DIFF_BYTES = 4 * 1024 * 1024  # the largest diff submit takes (and the largest file a diff may contain)
GIT = "git -c safe.directory='*' -c core.quotepath=off"


def describe_command_result(result: Any, timeout: float) -> tuple[str, bool]:
    """(observation, is_error) for a finished command."""
    output = result.output.rstrip("\n")
    notes = []
    if result.timed_out:
        notes.append(f"[command timed out after {timeout:g}s and was killed]")
    elif result.exit_code not in (0, None):
        notes.append(f"[exit code: {result.exit_code}]")
    if getattr(result, "session_restarted", False):
        notes.append("[the shell was restarted: working directory kept, environment variables lost]")
    body = output if output else ("(no output)" if not notes else "")
    return "\n".join(part for part in [body, *notes] if part), bool(result.timed_out)


async def bash(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    command = args["command"]
    if not command.strip():
        raise ToolError("command is empty")
    result = await ctx.backend.run(command, timeout=ctx.command_timeout, session=DEFAULT_SESSION)
    observation, is_error = describe_command_result(result, ctx.command_timeout)
    return ToolResult(observation, is_error=is_error)


async def search(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    pattern, mode = args["pattern"], args.get("mode", "content")
    if not pattern:
        raise ToolError("pattern is empty")
    path = args.get("path", ".") or "."
    limit = MAX_SEARCH_RESULTS + 1
    if mode == "content":
        command = (f"grep -rnIE --exclude-dir=.git -e {shlex.quote(pattern)} -- {shlex.quote(path)} 2>&1 | "
                   f"head -n {limit}; exit ${{PIPESTATUS[0]}}")
    else:  # find takes no `--` before its paths: the path must not look like an option or an expression
        command = (f"find {path_operand(path)} -not -path '*/.git/*' -name {shlex.quote(pattern)} 2>&1 | "
                   f"head -n {limit}; exit ${{PIPESTATUS[0]}}")
    result = await ctx.helper(f"cd {shlex.quote(ctx.backend.workdir)} && ( {command} )")
    lines = [line for line in result.output.splitlines() if line]
    if result.timed_out:
        raise ToolError(f"search timed out after {ctx.command_timeout:g}s; narrow the path")
    if mode == "content" and result.exit_code not in (0, 1) or mode == "files" and result.exit_code != 0:
        raise ToolError(f"search failed: {result.output.strip() or f'exit code {result.exit_code}'}")
    if not lines:
        what = "matches" if mode == "content" else "files"
        return ToolResult(f"No {what} for {pattern!r} in {args.get('path', '.')}")
    note = f"\n[more than {MAX_SEARCH_RESULTS} results; showing the first {MAX_SEARCH_RESULTS}]" \
        if len(lines) > MAX_SEARCH_RESULTS else ""
    return ToolResult("\n".join(lines[:MAX_SEARCH_RESULTS]) + note)


async def workspace_diff(ctx: ToolContext) -> str | None:
    """The git diff of the workspace against HEAD, untracked files included, without touching the real index.
    None when the workspace is not a git repository."""
    workdir = shlex.quote(ctx.backend.workdir)
    inside = await ctx.helper(f"cd {workdir} && {GIT} rev-parse --is-inside-work-tree 2>/dev/null")
    if inside.exit_code != 0 or inside.output.strip() != "true":
        return None
    await _refuse_large_changes(ctx)
    token = secrets.token_hex(6)
    index, patch = f"/tmp/iflow-index-{token}", f"/tmp/iflow-diff-{token}.patch"
    # in a subshell, so that `exit` does not end the helper session
    script = (f"( cd {workdir} && {{ cp \"$({GIT} rev-parse --absolute-git-dir)/index\" {index} 2>/dev/null || true; }}"
              f" && GIT_INDEX_FILE={index} {GIT} add -A . && GIT_INDEX_FILE={index} {GIT} diff --cached --binary "
              f"--no-color --no-ext-diff > {patch}; status=$?; rm -f {index}; exit $status )")
    made = await ctx.helper(script, timeout=max(ctx.command_timeout, 120))
    try:
        if made.exit_code != 0:
            raise ToolError(f"git diff failed: {made.output.strip() or f'exit code {made.exit_code}'}")
        return (await ctx.backend.read_file(patch, limit=MAX_DIFF_BYTES)).decode("utf-8", "replace")
    except FileTooLarge as exc:
        raise ToolError(f"the diff is too large ({exc.size} bytes; the limit is {MAX_DIFF_BYTES}): remove generated "
                        "or data files from the workspace (or add them to .gitignore)") from None
    finally:
        await ctx.helper(f"rm -f -- {patch} {index} {index}.lock")  # also what a killed git add leaves


async def _refuse_large_changes(ctx: ToolContext) -> None:
    """Before diffing: no changed or untracked file may be larger than the diff limit (`git add` of a sparse 50 GB
    file would read all of it)."""
    workdir = shlex.quote(ctx.backend.workdir)
    listing = await ctx.helper(
        f"cd -- {workdir} && {GIT} ls-files -z --modified --others --exclude-standard | "
        f"xargs -0 -r stat -c '%s %n' -- 2>/dev/null | awk -v max={MAX_DIFF_BYTES} '$1 > max' | head -n 5")
    large = [line.split(" ", 1) for line in listing.output.splitlines() if " " in line]
    if large:
        named = ", ".join(f"{name} ({size} bytes)" for size, name in large)
        raise ToolError(f"cannot diff the workspace: files larger than {MAX_DIFF_BYTES} bytes changed: {named}; "
                        "remove them or add them to .gitignore")


async def submit(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    diff = await workspace_diff(ctx)
    summary = args.get("summary", "")
    submission = diff if diff is not None else summary
    shown = f"diff of {len(diff.splitlines())} lines" if diff is not None else "no git repository: summary only"
    return ToolResult(f"Submitted ({shown}).", ends_episode=True, submission=submission)


BASH = Tool("bash", "Run a bash command in a persistent shell (cd and exported variables persist). "
            "Output is cut to head and tail when long.",
            object_schema({"command": {"type": "string"}}, ["command"]), bash)
SEARCH = Tool("search", "Search the workspace: mode 'content' greps files for a regex (default); mode 'files' finds "
              "file names matching a glob such as '*.py'.",
              object_schema({"pattern": {"type": "string"}, "path": {"type": "string"},
                             "mode": {"type": "string", "enum": ["content", "files"]}}, ["pattern"]),
              search, read_only=True, path_argument="path")
SUBMIT = Tool("submit", "Finish the task. Call it once the work is done and checked.",
              object_schema({"summary": {"type": "string"}}, []), submit, read_only=True)
