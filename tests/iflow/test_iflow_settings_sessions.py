"""Connection settings precedence, saved sessions, the system prompt builder, and the docker-workspace helpers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from iflow_helpers import git

from iflow.prompts import build_system_prompt, tool_line
from iflow.sessions import SessionStore
from iflow.settings import DEFAULT_BASE_URL, resolve_settings
from iflow.tools import ToolRegistry
from iflow.trajectory import Trajectory, Turn
from iflow.workspace import apply_patch, copy_workspace


def test_flag_beats_environment_beats_config_file(tmp_path: Path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"baseUrl": "http://file/v1", "apiKey": "file-key", "modelName": "file-model"}))
    assert resolve_settings({}, config, {}).model_dump() == {"base_url": "http://file/v1", "api_key": "file-key",
                                                             "model": "file-model"}
    env = {"IFLOW_API_KEY": "env-key", "OPENAI_BASE_URL": "http://openai-env/v1"}
    resolved = resolve_settings({"model": "flag-model"}, config, env)
    assert (resolved.base_url, resolved.api_key, resolved.model) == ("http://openai-env/v1", "env-key", "flag-model")
    assert resolve_settings({}, tmp_path / "missing.json", {}).base_url == DEFAULT_BASE_URL
    config.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        resolve_settings({}, config, {})


def test_session_store_saves_atomically_and_loads_latest(tmp_path: Path):
    store = SessionStore(tmp_path / "sessions")
    first = Trajectory(id="a1", task="one", turns=[Turn(index=0, completion_text="x")])
    store.save(first)
    second = Trajectory(id="b2", task="two")
    path = store.save(second)
    assert path.read_text().count("\n") == 1 and not list(path.parent.glob(".*.tmp"))
    assert store.load("a1") == first and store.load("latest").id == "b2"
    with pytest.raises(FileNotFoundError, match="no session 'zz'.*recent: b2, a1"):
        store.load("zz")
    with pytest.raises(ValueError, match="invalid session id"):
        store.load("../etc/passwd")
    with pytest.raises(FileNotFoundError, match="no saved sessions"):
        SessionStore(tmp_path / "empty").load("latest")


def test_system_prompt_lists_every_tool_and_is_short():
    schemas = ToolRegistry.from_names().schemas()
    prompt = build_system_prompt(schemas, "/workspace")
    for name in ("bash", "view", "create", "str_replace", "insert", "search", "submit"):
        assert f"\n- {name}(" in prompt
    assert '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>' in prompt
    assert len(prompt) < 1600
    assert tool_line(schemas[1]).startswith("- view(path*: string, view_range: [integer, ...]):")
    custom = build_system_prompt(schemas, "/w", "Use tabs.", template="Tools:\n{tools}\nIn {workdir}.{project_context}")
    assert custom.startswith("Tools:\n- bash(") and custom.endswith("In /w.\n\nProject notes (IFLOW.md):\nUse tabs.")
    long_notes = build_system_prompt(schemas, "/w", "x" * 10_000)
    assert "[... IFLOW.md cut ...]" in long_notes and len(long_notes) < 6000


def test_workspace_copy_skips_caches_and_patch_applies(tmp_path: Path):
    source = tmp_path / "src"
    (source / ".venv" / "lib").mkdir(parents=True)
    (source / ".venv" / "lib" / "big.bin").write_bytes(b"x" * 1000)
    (source / "pkg").mkdir()
    (source / "pkg" / "a.py").write_text("a = 1\n")
    copied = copy_workspace(source, tmp_path / "copy")
    assert copied == 6 and (tmp_path / "copy" / "pkg" / "a.py").exists() and not (tmp_path / "copy" / ".venv").exists()
    with pytest.raises(ValueError, match="more than 0 MiB"):
        copy_workspace(source, tmp_path / "copy2", limit=3)
    # a patch made in a git copy applies to the original, which need not be a repository
    work = tmp_path / "copy"
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    (work / "pkg" / "a.py").write_text("a = 2\n")
    (work / "pkg" / "b.py").write_text("b = 1\n")
    git(work, "add", "-A")
    patch = git(work, "diff", "--cached", "--binary")
    apply_patch(patch, source)
    assert (source / "pkg" / "a.py").read_text() == "a = 2\n" and (source / "pkg" / "b.py").read_text() == "b = 1\n"
    with pytest.raises(RuntimeError, match="git apply failed"):
        apply_patch(patch, source)  # already applied


def test_patch_applies_in_a_subdirectory_of_a_repository(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "a.py").write_text("a = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    # a git-format patch whose paths are relative to the subdirectory (as one made in the sandbox copy is)
    patch = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    apply_patch(patch, repo / "sub")
    assert (repo / "sub" / "a.py").read_text() == "a = 2\n"
