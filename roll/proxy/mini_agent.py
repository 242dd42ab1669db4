"""A black-box coding agent that needs nothing but python3's standard library: the default command of
`agent=blackbox` (the sandbox image has no iflow install). It is written into the sandbox and run there, reaching
the model only through OPENAI_BASE_URL (the proxy shim on loopback), with two tools, `bash` and `submit`.

    python3 mini_agent.py --task "fix the failing test" [--max-turns 6] [--max-tokens 64]

Exit status: 0 after `submit`, 3 when the turns ran out, 4 when the model endpoint failed."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

TOOLS = [
    {"type": "function", "function": {"name": "bash", "description": "Run a bash command in the workspace.",
                                      "parameters": {"type": "object", "required": ["command"],
                                                     "properties": {"command": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "submit", "description": "Finish: the work in the workspace is done.",
                                      "parameters": {"type": "object", "properties": {}}}},
]
SYSTEM = "You are a coding agent in a sandbox. Use the tools to solve the task, then call submit."
MAX_OUTPUT = 2000  # characters of command output sent back


def chat(messages: list[dict], max_tokens: int, timeout: float) -> dict:
    body = json.dumps({"model": os.environ.get("OPENAI_MODEL", "policy"), "messages": messages, "tools": TOOLS,
                       "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "")})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)["choices"][0]["message"]


def run_bash(command: str, timeout: float) -> str:
    try:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout, check=False)
        output = f"{done.stdout}{done.stderr}[exit {done.returncode}]"
    except subprocess.TimeoutExpired:
        output = f"[timed out after {timeout:g}s]"
    return output if len(output) <= MAX_OUTPUT else output[: MAX_OUTPUT // 2] + "\n...\n" + output[-MAX_OUTPUT // 2:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--command-timeout", type=float, default=10.0)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": args.task}]
    for _ in range(args.max_turns):
        try:
            message = chat(messages, args.max_tokens, args.request_timeout)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            print(f"model endpoint failed: {exc}", file=sys.stderr)
            return 4
        messages.append({key: message[key] for key in ("role", "content", "tool_calls") if message.get(key)})
        calls = message.get("tool_calls") or []
        if not calls:
            messages.append({"role": "user", "content": "No tool call found. Call bash or submit."})
            continue
        call = calls[0]
        name = call["function"]["name"]
        try:
            arguments = json.loads(call["function"].get("arguments") or "{}")
        except ValueError:
            arguments = {}
        if name == "submit":
            return 0
        if name == "bash" and isinstance(arguments.get("command"), str):
            output = run_bash(arguments["command"], args.command_timeout)
        else:
            output = f"unknown tool or bad arguments: {name}"
        messages.append({"role": "tool", "tool_call_id": call.get("id") or "", "content": output})
    return 3


if __name__ == "__main__":
    sys.exit(main())
