"""The agent image's wheels: this project and the packages the `iflow` CLI imports on its one-shot HTTP path, built on
the host (`pip wheel`, at set-up time) into the recipe's build context, then installed inside the image with
`pip install --no-index`. No torch, transformers or vLLM: `docker/agent/wheels.txt` names the roots (what
`import iflow.cli` pulls in), and their dependency closure is taken at the versions installed here."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

AGENT_IMAGE = "rock-agent:0.1.0"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
WHEELS_DIR = "wheels"            # inside the recipe folder (the build context); ignored by git
REQUIREMENTS = "requirements.txt"  # written beside the wheels: the pinned closure the image installs


class WheelBuildError(RuntimeError):
    pass


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(roots: list[str]) -> dict[str, str]:
    """{distribution: installed version} for `roots` and everything they require (extras left out, markers
    evaluated for this interpreter, which is the image's Python minor version)."""
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise WheelBuildError(f"{name} is not installed in {sys.prefix}: run scripts/setup.sh first") from None
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return dict(sorted(found.items()))


def read_roots(recipe_dir: Path) -> list[str]:
    lines = (recipe_dir / "wheels.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _pip_wheel(args: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", str(dest),
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise WheelBuildError(f"pip wheel failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


def build_wheels(recipe_dir: Path, log=print) -> Path:
    """Fill `recipe_dir/wheels/` with the project's wheel, the closure's wheels and requirements.txt (pins)."""
    dest = recipe_dir / WHEELS_DIR
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pins = runtime_closure(read_roots(recipe_dir))
    log(f"building {len(pins)} dependency wheels and the project's wheel into {dest}")
    _pip_wheel([f"{name}=={version}" for name, version in pins.items()], dest)
    _pip_wheel(["--no-build-isolation", str(PROJECT_ROOT)], dest)
    (dest / REQUIREMENTS).write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    shutil.rmtree(PROJECT_ROOT / "build", ignore_errors=True)  # setuptools' in-tree scratch
    return dest


def wheels_digest(dest: Path) -> str:
    """What the wheels hold, not when they were zipped: each wheel's RECORD (per-file sha256) and the pins. A
    rebuilt wheel of unchanged sources gives the same digest, so an image is rebuilt only when code changes."""
    digest = hashlib.sha256((dest / REQUIREMENTS).read_bytes())
    for wheel in sorted(dest.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
            digest.update(wheel.name.encode() + b"\0" + archive.read(record))
    return digest.hexdigest()[:12]
