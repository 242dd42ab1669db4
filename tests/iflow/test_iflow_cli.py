"""The `iflow` command driven as a user would (a subprocess with piped stdin), against a real `vllm serve` of the tiny
model: a random model's garbage never crashes it, several turns run, and the session file is complete."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from iflow_helpers import API_KEY, SERVED_NAME, free_port, git

IFLOW = [sys.executable, "-c", "from iflow.cli import main; main()"]


def run_iflow(args: list[str], cwd: Path, home: Path, stdin: str = "", timeout: float = 240,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("IFLOW_", "OPENAI_"))}
    environment.update({"IFLOW_HOME": str(home), "COLUMNS": "120", "NO_COLOR": "1", **(env or {})})
    return subprocess.run([*IFLOW, *args], check=False, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=environment)


def sessions(home: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((home / "sessions").glob("*.jsonl"))]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "iflow-home"
    path.mkdir()
    return path


def server_args(base_url: str, tiny_model_path: Path) -> list[str]:
    return ["--base-url", base_url, "--model", SERVED_NAME, "--api-key", API_KEY, "--tokenizer", str(tiny_model_path),
            "--max-context-tokens", "1900", "--max-tokens", "48", "--temperature", "1.0", "--seed", "5"]


def assert_complete(session: dict, turns: int) -> None:
    assert len(session["turns"]) == turns
    assert session["outcome"] != "running" and session["system_prompt"] and session["task"]
    for index, turn in enumerate(session["turns"]):
        assert turn["index"] == index
        assert turn["prompt_messages"][0]["role"] == "system" and turn["completion_text"] is not None
        assert {"context", "policy", "total"} <= set(turn["timings"])
        assert turn["observation"] or turn["tool_call"] is None
    assert session["parse_errors"] == sum(1 for turn in session["turns"] if turn["parse_error"])
    assert "api_key" not in json.dumps(session["metadata"]).lower()


def test_unreachable_endpoint_is_one_clear_line(tmp_path: Path, home: Path):
    done = run_iflow(["-p", "hi", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m"], tmp_path, home)
    assert done.returncode == 1
    assert "cannot reach the model server at http://127.0.0.1" in done.stdout and "Traceback" not in done.stderr


def test_missing_model_is_a_usage_error(tmp_path: Path, home: Path):
    done = run_iflow(["-p", "hi"], tmp_path, home)
    assert done.returncode == 2 and "no model" in done.stdout


def test_resuming_an_unknown_session_is_a_usage_error(tmp_path: Path, home: Path):
    done = run_iflow(["--resume", "nope", "--model", "m", "--base-url", f"http://127.0.0.1:{free_port()}/v1"],
                     tmp_path, home)
    assert done.returncode == 2 and "no session 'nope'" in done.stdout


def test_settings_come_from_environment_and_config_file(tmp_path: Path, home: Path):
    port = free_port()
    (home / "settings.json").write_text(json.dumps({"baseUrl": f"http://127.0.0.1:{port}/v1", "modelName": "m"}))
    done = run_iflow(["-p", "hi"], tmp_path, home)
    assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stdout
    other = free_port()
    done = run_iflow(["-p", "hi"], tmp_path, home, env={"IFLOW_BASE_URL": f"http://127.0.0.1:{other}/v1"})
    assert f"127.0.0.1:{other}" in done.stdout  # the environment wins over the file


@pytest.mark.slow
def test_wrong_key_is_one_clear_line(vllm_server: str, tmp_path: Path, home: Path):
    done = run_iflow(["-p", "hi", "--base-url", vllm_server, "--model", SERVED_NAME, "--api-key", "wrong"],
                     tmp_path, home)
    assert done.returncode == 1 and "rejected the API key (HTTP 401)" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_one_shot_with_a_random_model_runs_every_turn(vllm_server: str, tiny_model_path: Path, tmp_path: Path,
                                                      home: Path):
    (tmp_path / "a.py").write_text("x = 1\n")
    args = ["-p", "Describe a.py", "--until-submit", "--max-turns", "4", "--approval-mode", "yolo",
            "--tool-format", "hermes", *server_args(vllm_server, tiny_model_path)]
    done = run_iflow(args, tmp_path, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "── turn 3" in done.stdout
    (session,) = sessions(home)
    assert_complete(session, 4)
    assert session["outcome"] in ("max_turns", "submitted") and session["metadata"]["sandbox"] == "none"


@pytest.mark.slow
def test_interactive_session_and_resume(vllm_server: str, tiny_model_path: Path, tmp_path: Path, home: Path):
    args = ["--approval-mode", "yolo", "--max-turns", "3", *server_args(vllm_server, tiny_model_path)]
    done = run_iflow(args, tmp_path, home, stdin="hello\nwhat files are here?\n\nand now?\n/exit\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (first,) = sessions(home)
    assert len(first["turns"]) >= 3  # each user message gets at least one turn (native tools, "auto", in use)
    assert first["task"] == "hello"
    assert [t["user_input"] for t in first["turns"] if t["user_input"]] == ["what files are here?", "and now?"]
    assert_complete(first, len(first["turns"]))
    resumed = run_iflow(["--resume", "latest", *args], tmp_path, home, stdin="one more\n")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (second,) = sessions(home)
    assert second["id"] == first["id"] and len(second["turns"]) > len(first["turns"])
    assert "one more" in [t["user_input"] for t in second["turns"]]


@pytest.mark.slow
@pytest.mark.docker
def test_docker_sandbox_mode_leaves_the_directory_untouched(vllm_server: str, tiny_model_path: Path,
                                                            tmp_path: Path, home: Path, docker_sandbox_ready):
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    args = ["-p", "Edit a.py", "--sandbox", "docker", "--until-submit", "--max-turns", "2",
            "--approval-mode", "yolo", "--no-apply", *server_args(vllm_server, tiny_model_path)]
    done = run_iflow(args, tmp_path, home)
    assert done.returncode == 0, done.stdout + done.stderr
    (session,) = sessions(home)
    assert session["metadata"]["sandbox"] == "docker" and session["system_prompt"].count("/workspace") >= 1
    assert_complete(session, 2)
    assert (tmp_path / "a.py").read_text() == "x = 1\n"
