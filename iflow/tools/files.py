"""File tools: view (numbered lines or a directory listing), create, str_replace (exactly one match), insert.
Every read is capped by the backend (a file's size is checked before it is read)."""
from __future__ import annotations

import difflib
from typing import Any

from iflow.backends.base import FileTooLarge
from iflow.tools.base import Tool, ToolContext, ToolError, ToolResult, object_schema, path_operand

MAX_FILE_BYTES = 4 * 1024 * 1024  # the largest file view and the edit tools read
MAX_VIEW_LINES = 400     # a file view without a range shows at most this many lines
MAX_LISTING_ENTRIES = 300
SNIPPET_CONTEXT = 4      # lines shown around an edit


async def read_text(ctx: ToolContext, path: str, kind: str | None = None) -> str:
    kind = kind or await ctx.kind(path)
    if kind == "missing":
        raise ToolError(f"{path} does not exist")
    if kind != "file":
        raise ToolError(f"{path} is a {'directory' if kind == 'dir' else 'special file'}, not a regular file")
    try:
        data = await ctx.backend.read_file(path, limit=MAX_FILE_BYTES)
    except FileTooLarge as exc:
        size = f"{exc.size} bytes" if exc.size is not None else f"more than {MAX_FILE_BYTES} bytes"
        raise ToolError(f"{path} is too large for this tool ({size}; the limit is {MAX_FILE_BYTES} bytes); look at "
                        "parts of it with bash (head -c, sed -n, grep)") from None
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} looks binary; use bash to inspect it")
    return data.decode("utf-8", "replace")


async def write_text(ctx: ToolContext, path: str, text: str) -> None:
    try:
        await ctx.backend.write_file(path, text)
    except FileTooLarge as exc:
        raise ToolError(f"the new content of {path} is too large ({exc.size} bytes; the limit is {exc.limit})") \
            from None
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {exc.strerror or exc}; no change made") from None


def numbered(lines: list[str], first_number: int) -> str:
    return "\n".join(f"{number:6}\t{line}" for number, line in enumerate(lines, first_number))


def edit_diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a{path}", f"b{path}"))


def snippet(text: str, first_line: int, last_line: int) -> str:
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    start = max(1, first_line - SNIPPET_CONTEXT)
    end = min(len(lines), last_line + SNIPPET_CONTEXT)
    return numbered(lines[start - 1:end], start)


async def view(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    path = ctx.resolve(args["path"])
    kind = await ctx.kind(path)
    if kind == "dir":
        if "view_range" in args:
            raise ToolError(f"view_range applies to files, but {path} is a directory")
        result = await ctx.helper(f"cd -- {path_operand(path)} && find . -mindepth 1 -maxdepth 2 -not -path '*/.*' "
                                  f"| sort | head -n {MAX_LISTING_ENTRIES + 1}")
        entries = [line.removeprefix("./") for line in result.output.splitlines() if line]
        more = len(entries) > MAX_LISTING_ENTRIES
        listing = "\n".join(entries[:MAX_LISTING_ENTRIES]) or "(empty directory)"
        note = f"\n[listing cut at {MAX_LISTING_ENTRIES} entries]" if more else ""
        return ToolResult(f"Files and directories up to 2 levels deep in {path} (hidden items excluded):\n"
                          f"{listing}{note}")
    text = await read_text(ctx, path, kind)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    total = len(lines)
    if "view_range" in args:
        start, end = args["view_range"]
        end = total if end == -1 else end
        if not 1 <= start <= max(total, 1):
            raise ToolError(f"view_range start {start} is outside the file's lines 1-{total}")
        if end < start:
            raise ToolError(f"view_range end {end} is before start {start} (use -1 for the end of the file)")
        end = min(end, total)
        return ToolResult(numbered(lines[start - 1:end], start) if total else "(empty file)")
    if total > MAX_VIEW_LINES:
        return ToolResult(numbered(lines[:MAX_VIEW_LINES], 1) +
                          f"\n[file has {total} lines; showing 1-{MAX_VIEW_LINES}; use view_range to see more]")
    return ToolResult(numbered(lines, 1) if total else "(empty file)")


async def create(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    path = ctx.resolve(args["path"])
    kind = await ctx.kind(path)
    if kind != "missing":
        raise ToolError(f"{path} already exists; use str_replace or insert to edit it")
    parent = path.rsplit("/", 1)[0] or "/"
    made = await ctx.helper(f"mkdir -p -- {path_operand(parent)}")
    if made.exit_code != 0:
        raise ToolError(f"cannot create directory {parent}: {made.output.strip()}")
    await write_text(ctx, path, args["file_text"])
    return ToolResult(f"Created {path} ({len(args['file_text'].splitlines())} lines).",
                      diff=edit_diff(path, "", args["file_text"]))


async def str_replace(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    path = ctx.resolve(args["path"])
    old, new = args["old_str"], args.get("new_str", "")
    if old == "":
        raise ToolError("old_str must not be empty")
    text = await read_text(ctx, path)
    count = text.count(old)
    if count == 0:
        raise ToolError(f"old_str was not found in {path}; no change made. It must match the file exactly, "
                        "including whitespace and indentation (view the file to copy it).")
    if count > 1:
        lines, index = [], text.find(old)
        while index >= 0:
            lines.append(str(text.count("\n", 0, index) + 1))
            index = text.find(old, index + 1)
        raise ToolError(f"old_str occurs {count} times in {path} (starting at lines {', '.join(lines)}); "
                        "no change made. Include more surrounding lines so that it matches exactly once.")
    start_line = text.count("\n", 0, text.index(old)) + 1
    updated = text.replace(old, new, 1)
    await write_text(ctx, path, updated)
    shown = snippet(updated, start_line, start_line + new.count("\n"))
    return ToolResult(f"Edited {path}. The region now reads:\n{shown}", diff=edit_diff(path, text, updated))


async def insert(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    path = ctx.resolve(args["path"])
    after, new = args["insert_line"], args["new_str"]
    text = await read_text(ctx, path)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if not 0 <= after <= len(lines):
        raise ToolError(f"insert_line {after} is outside 0-{len(lines)} (0 inserts before the first line)")
    new_lines = new.split("\n")
    if new.endswith("\n"):
        new_lines.pop()
    updated_lines = lines[:after] + new_lines + lines[after:]
    updated = "\n".join(updated_lines) + ("\n" if text.endswith("\n") or not text else "")
    await write_text(ctx, path, updated)
    shown = snippet(updated, after + 1, after + len(new_lines))
    return ToolResult(f"Inserted {len(new_lines)} lines into {path} after line {after}:\n{shown}",
                      diff=edit_diff(path, text, updated))


PATH = {"type": "string", "description": "file path, absolute or relative to the workspace"}

VIEW = Tool("view", "Show a file with line numbers (optionally only lines view_range=[start, end], end -1 = last), "
            "or list a directory two levels deep.",
            object_schema({"path": PATH, "view_range": {"type": "array", "items": {"type": "integer"},
                                                        "minItems": 2, "maxItems": 2}}, ["path"]),
            view, read_only=True, path_argument="path")
CREATE = Tool("create", "Create a new file with the given content.",
              object_schema({"path": PATH, "file_text": {"type": "string"}}, ["path", "file_text"]), create,
              path_argument="path")
STR_REPLACE = Tool("str_replace", "Replace old_str with new_str in a file. old_str must match exactly once.",
                   object_schema({"path": PATH, "old_str": {"type": "string"}, "new_str": {"type": "string"}},
                                 ["path", "old_str", "new_str"]), str_replace, path_argument="path")
INSERT = Tool("insert", "Insert new_str after line insert_line of a file (0 = at the top).",
              object_schema({"path": PATH, "insert_line": {"type": "integer"}, "new_str": {"type": "string"}},
                            ["path", "insert_line", "new_str"]), insert, path_argument="path")
