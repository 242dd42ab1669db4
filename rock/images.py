"""Sandbox images built offline: a Debian root filesystem from debootstrap, imported, then a Dockerfile layer."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

from rock.config import DEFAULT_IMAGE
from rock.engine import client as docker_client

RECIPES = Path(__file__).resolve().parent.parent / "docker"
SUITE = "bookworm"


class ImageBuildError(RuntimeError):
    pass


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses (no host is hard-coded)."""
    sources = [*Path("/etc/apt").glob("sources.list.d/*.sources"), Path("/etc/apt/sources.list"),
               *Path("/etc/apt").glob("sources.list.d/*.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
            uri = match.group(1) or match.group(2)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise ImageBuildError("no Debian mirror found in /etc/apt sources; set one with --mirror")


def recipe_packages(recipe: str = "default") -> list[str]:
    lines = (RECIPES / recipe / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def image_exists(tag: str) -> bool:
    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _run(cmd: list[str], what: str, **kwargs) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def build_base(tag: str, packages: list[str], mirror: str | None = None) -> None:
    """debootstrap a minimal Debian with `packages` and import it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="rock-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(rootfs), mirror],
             "debootstrap")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", tag], "docker import", stdin=tar.stdout)
        tar.wait()


def build(recipe: str = "default", tag: str = DEFAULT_IMAGE, mirror: str | None = None,
          if_missing: bool = False, log=print) -> str:
    """Build the image of `docker/<recipe>/`: its packages.txt becomes the Debian base, its Dockerfile the top."""
    if if_missing and image_exists(tag):
        log(f"image {tag} already present")
        return tag
    base_tag = f"rock-base-{recipe}:{tag.rsplit(':', 1)[-1]}"
    if not image_exists(base_tag):
        log(f"debootstrapping Debian {SUITE} for {base_tag} (about a minute)")
        build_base(base_tag, recipe_packages(recipe), mirror)
    log(f"building {tag} from docker/{recipe}/Dockerfile")
    docker_client().images.build(path=str(RECIPES / recipe), tag=tag, buildargs={"BASE": base_tag}, rm=True,
                                 labels={"rock.recipe": recipe})
    return tag


def list_images() -> list[dict[str, str]]:
    rows = []
    for image in docker_client().images.list():
        for tag in image.tags:
            if tag.startswith("rock-") or image.labels.get("rock.recipe"):
                rows.append({"tag": tag, "id": image.short_id, "size_mb": f"{image.attrs['Size'] / 1e6:.0f}",
                             "created": image.attrs["Created"][:19]})
    return rows
