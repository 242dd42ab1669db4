"""Source distributions of the pinned packages, downloaded from the package index with pip (the only network use,
at image-build time) and cached by version; every file is checked against its pinned sha256."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from roll.swebench.local.catalog import PackagePin

CACHE_DIR = Path(os.environ.get("ROLL_SWEBENCH_SDISTS", Path.home() / ".cache" / "letitflow" / "sdists"))


class SdistError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(pin: PackagePin, cache: Path = CACHE_DIR, timeout: float = 600.0) -> Path:
    """The verified sdist of `pin`, downloaded once (`pip download --no-deps --no-binary :all:`)."""
    target = cache / pin.sdist_name
    if target.is_file() and sha256_of(target) == pin.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdist-", dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, f"{pin.package}=={pin.version}"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SdistError(f"downloading {pin.package}=={pin.version} took over {timeout:g}s") from None
        if proc.returncode != 0:
            raise SdistError(f"pip could not download {pin.package}=={pin.version} from the package index:\n"
                             f"{(proc.stdout + proc.stderr)[-2000:]}")
        found = [p for p in Path(tmp).iterdir() if p.name.lower() == pin.sdist_name.lower()]
        if not found:
            raise SdistError(f"pip downloaded {[p.name for p in Path(tmp).iterdir()]}, not {pin.sdist_name}")
        digest = sha256_of(found[0])
        if digest != pin.sha256:
            raise SdistError(f"{pin.sdist_name} has sha256 {digest}, pinned {pin.sha256}: the package index "
                             "served a different file; refusing to build from it")
        found[0].replace(target)
    return target
