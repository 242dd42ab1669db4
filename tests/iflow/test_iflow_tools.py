"""The tools, run for real against a local workspace (LocalBackend): results, errors, and the submitted diff."""
from __future__ import annotations

from pathlib import Path

import pytest
from iflow_helpers import git

from iflow.backends import LocalBackend
from iflow.tools import ToolContext, ToolRegistry
from iflow.trajectory import ToolCall

REGISTRY = ToolRegistry.from_names()


@pytest.fixture
async def ctx(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("a = 1\nb = 2\na = 1\n")
    (tmp_path / ".hidden").write_text("x")
    backend = LocalBackend(tmp_path, command_timeout=10)
    yield ToolContext(backend, command_timeout=10)
    await backend.close()


async def call(ctx: ToolContext, name: str, **arguments):
    return await REGISTRY.execute(ToolCall(name=name, arguments=arguments), ctx)


async def test_view_file_directory_and_ranges(ctx):
    result = await call(ctx, "view", path="pkg/mod.py")
    assert result.output.splitlines() == ["     1\ta = 1", "     2\tb = 2", "     3\ta = 1"]
    assert (await call(ctx, "view", path="pkg/mod.py", view_range=[2, -1])).output.splitlines()[0] == "     2\tb = 2"
    listing = await call(ctx, "view", path=".")
    assert "pkg\npkg/mod.py" in listing.output and ".hidden" not in listing.output
    for bad, message in [({"path": "nope.py"}, "does not exist"), ({"path": "pkg/mod.py", "view_range": [5, 6]},
                         "outside"), ({"path": "pkg/mod.py", "view_range": [3, 1]}, "before start")]:
        result = await call(ctx, "view", **bad)
        assert result.is_error and message in result.output


async def test_view_long_file_is_capped(ctx):
    await ctx.backend.write_file("long.txt", "".join(f"line {i}\n" for i in range(1000)))
    result = await call(ctx, "view", path="long.txt")
    assert "use view_range" in result.output and "line 399" in result.output and "line 400\n" not in result.output


async def test_str_replace_needs_exactly_one_match(ctx):
    none = await call(ctx, "str_replace", path="pkg/mod.py", old_str="c = 3", new_str="")
    assert none.is_error and "not found" in none.output
    two = await call(ctx, "str_replace", path="pkg/mod.py", old_str="a = 1", new_str="a = 5")
    assert two.is_error and "occurs 2 times" in two.output and "lines 1, 3" in two.output
    one = await call(ctx, "str_replace", path="pkg/mod.py", old_str="b = 2", new_str="b = 20")
    assert not one.is_error and "b = 20" in one.output and "-b = 2\n+b = 20" in one.diff
    assert (Path(ctx.backend.workdir) / "pkg/mod.py").read_text() == "a = 1\nb = 20\na = 1\n"


async def test_create_and_insert(ctx):
    created = await call(ctx, "create", path="new/dir/f.txt", file_text="one\ntwo\n")
    assert not created.is_error and (Path(ctx.backend.workdir) / "new/dir/f.txt").read_text() == "one\ntwo\n"
    again = await call(ctx, "create", path="new/dir/f.txt", file_text="x")
    assert again.is_error and "already exists" in again.output
    inserted = await call(ctx, "insert", path="new/dir/f.txt", insert_line=1, new_str="one and a half")
    assert not inserted.is_error
    assert (Path(ctx.backend.workdir) / "new/dir/f.txt").read_text() == "one\none and a half\ntwo\n"
    top = await call(ctx, "insert", path="new/dir/f.txt", insert_line=0, new_str="zero")
    assert not top.is_error and (Path(ctx.backend.workdir) / "new/dir/f.txt").read_text().startswith("zero\none\n")
    beyond = await call(ctx, "insert", path="new/dir/f.txt", insert_line=99, new_str="x")
    assert beyond.is_error and "outside 0-4" in beyond.output


async def test_bash_session_persists_and_reports_exit_codes(ctx):
    assert (await call(ctx, "bash", command="cd pkg && export GREETING=hi")).output == "(no output)"
    result = await call(ctx, "bash", command="pwd; echo $GREETING; ls; exit_code() { return 3; }; exit_code")
    assert result.output.splitlines()[:3] == [str(Path(ctx.backend.workdir) / "pkg"), "hi", "mod.py"]
    assert result.output.endswith("[exit code: 3]") and not result.is_error


async def test_bash_timeout_is_an_error_and_the_session_survives(ctx):
    ctx.command_timeout = 1
    slow = await call(ctx, "bash", command="cd pkg; sleep 30")
    assert slow.is_error and "timed out after 1s" in slow.output
    ctx.command_timeout = 10
    assert (await call(ctx, "bash", command="pwd")).output.endswith("/pkg")


async def test_search_content_and_files(ctx):
    found = await call(ctx, "search", pattern="b = [0-9]")
    assert found.output == "./pkg/mod.py:2:b = 2"
    files = await call(ctx, "search", pattern="*.py", mode="files")
    assert files.output == "./pkg/mod.py"
    assert "No matches" in (await call(ctx, "search", pattern="zzz")).output
    bad = await call(ctx, "search", pattern="(unclosed")
    assert bad.is_error and "search failed" in bad.output


async def test_invalid_arguments_are_reported_not_run(ctx):
    for arguments, message in [({}, "missing required 'command'"), ({"command": 5}, "must be string"),
                               ({"command": "ls", "cwd": "/"}, "unknown 'cwd'")]:
        assert message in REGISTRY.check(ToolCall(name="bash", arguments=arguments))
    assert "unknown tool 'rm'" in REGISTRY.check(ToolCall(name="rm"))
    assert "must be integer" in REGISTRY.check(ToolCall(name="insert", arguments={
        "path": "a", "insert_line": True, "new_str": ""}))
    assert "view_range" in REGISTRY.check(ToolCall(name="view", arguments={"path": "a", "view_range": [1]}))


async def test_submit_returns_the_git_diff_including_new_files(bug_repo: Path):
    async with LocalBackend(bug_repo) as backend:
        ctx = ToolContext(backend)
        (bug_repo / "stats.py").write_text((bug_repo / "stats.py").read_text().replace(" + 1)", ")"))
        (bug_repo / "notes.txt").write_text("new\n")
        result = await call(ctx, "submit", summary="fixed")
    assert result.ends_episode and not result.is_error
    assert "-    return sum(values) / (len(values) + 1)\n+    return sum(values) / (len(values))" in result.submission
    assert "new file mode" in result.submission and "+new" in result.submission
    # the user's index is untouched: notes.txt is still untracked
    status = git(bug_repo, "status", "--porcelain")
    assert "?? notes.txt" in status


async def test_submit_outside_git_returns_the_summary(ctx):
    result = await call(ctx, "submit", summary="all done")
    assert result.ends_episode and result.submission == "all done"


def test_plan_mode_registry_is_read_only():
    names = set(ToolRegistry.from_names(read_only=True).tools)
    assert names == {"view", "search", "submit"}
    with pytest.raises(ValueError, match="unknown tool name"):
        ToolRegistry.from_names(["bash", "teleport"])
