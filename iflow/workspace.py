"""`--sandbox docker`: the user's directory is copied into a ROCK sandbox, the agent works on the copy, and the
resulting diff is offered back. The copy is committed inside the sandbox as a baseline, so the diff holds exactly the
agent's changes (uncommitted local changes included in the baseline, never in the diff)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from iflow.backends.base import TOOLS_SESSION
from iflow.backends.rock_backend import RockBackend
from iflow.tools.shell import GIT

SKIPPED_NAMES = {".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox"}
MAX_WORKSPACE_BYTES = 200 * 1024 * 1024
COMMIT = f"{GIT} -c user.name=iflow -c user.email=iflow@localhost -c commit.gpgsign=false commit -q --no-verify"


def copy_workspace(source: Path, target: Path, limit: int = MAX_WORKSPACE_BYTES) -> int:
    """Copy `source` to `target` without virtualenvs and caches. Returns bytes copied; refuses huge trees."""
    total = 0
    for path in source.rglob("*"):
        if any(part in SKIPPED_NAMES for part in path.relative_to(source).parts):
            continue
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            if total > limit:
                raise ValueError(f"{source} holds more than {limit // 2**20} MiB to copy into the sandbox; "
                                 "run from a smaller directory or use --sandbox none")
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(*SKIPPED_NAMES))
    return total


async def populate_sandbox(sandbox, source: Path) -> RockBackend:
    """Upload `source` into the started sandbox's workdir and commit it there as the baseline."""
    backend = RockBackend(sandbox)
    with tempfile.TemporaryDirectory(prefix="iflow-upload-") as tmp:
        staged = Path(tmp) / "workspace"
        copy_workspace(source, staged)
        await sandbox.upload(staged, backend.workdir)
    await commit_baseline(backend, "iflow baseline")
    return backend


async def commit_baseline(backend: RockBackend, message: str) -> None:
    script = (f"cd {backend.workdir} && ({GIT} rev-parse --is-inside-work-tree >/dev/null 2>&1 || git init -q) && "
              f"{GIT} add -A . && {COMMIT} --allow-empty -m '{message}'")
    result = await backend.run(script, timeout=120, session=TOOLS_SESSION)
    if result.exit_code != 0:
        raise RuntimeError(f"could not commit the workspace baseline in the sandbox: {result.output.strip()}")


def apply_patch(patch: str, directory: Path, timeout: float = 60.0) -> None:
    """Apply a git patch to `directory` (a git repository or not). Raises RuntimeError naming the failure."""
    if not patch.strip():
        return
    # inside a repository, git apply takes paths from the top level: point it at `directory`'s place in the repo
    prefix = subprocess.run(["git", "rev-parse", "--show-prefix"], check=False, cwd=directory, capture_output=True,
                            text=True, timeout=timeout)
    relocate = [f"--directory={prefix.stdout.strip()}"] if prefix.returncode == 0 and prefix.stdout.strip() else []
    try:
        done = subprocess.run(["git", "apply", "--binary", "--whitespace=nowarn", *relocate, "-"], check=False,
                              cwd=directory, input=patch.encode(), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"git apply did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        raise RuntimeError(f"git apply failed in {directory}: {done.stderr.decode(errors='replace').strip()}")
