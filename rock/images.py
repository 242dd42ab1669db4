"""Sandbox images built offline: a Debian root filesystem from debootstrap, imported, then a Dockerfile layer."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from rock import agent_image
from rock.agent_image import AGENT_IMAGE
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


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as handle:
        points = [line.split()[1] for line in handle]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _unmount_all(root: Path) -> None:
    """debootstrap mounts /proc (and sometimes /sys) in the target and may leave them: never tar or delete
    through a mount."""
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(root):
        raise ImageBuildError(f"could not unmount {_mounts_under(root)}; remove them by hand")


def build_base(tag: str, packages: list[str], mirror: str | None = None) -> None:
    """debootstrap a minimal Debian with `packages` and import it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
    mirror = mirror or debian_mirror()
    tmp = Path(tempfile.mkdtemp(prefix="rock-rootfs-"))
    rootfs = tmp / "rootfs"
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(rootfs), mirror],
             "debootstrap")
        _unmount_all(rootfs)
        tar = subprocess.Popen(["tar", "--one-file-system", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", tag], "docker import", stdin=tar.stdout)
        tar.wait()
    finally:
        _unmount_all(rootfs) if rootfs.exists() else None
        shutil.rmtree(tmp, ignore_errors=True)


def recipe_parent(recipe: str) -> str | None:
    """A recipe with a `parent` file (e.g. docker/agent/) is built on top of that recipe's image, not debootstrapped."""
    path = RECIPES / recipe / "parent"
    return path.read_text().strip() if path.is_file() else None


def recipe_tag(recipe: str) -> str:
    return {"default": DEFAULT_IMAGE, "agent": AGENT_IMAGE}.get(recipe, f"rock-{recipe}:0.1.0")


def recipe_hash(recipe: str = "default") -> str:
    """Identifies what an image was built from: its package list (or its parent's recipe) and Dockerfile, and the
    contents of the wheels in its build context (built first: `prepare_context`)."""
    digest = hashlib.sha256()
    parent = recipe_parent(recipe)
    if parent is not None:
        digest.update(recipe_hash(parent).encode())
    for name in ("Dockerfile",) if parent is not None else ("packages.txt", "Dockerfile"):
        digest.update((RECIPES / recipe / name).read_bytes())
    if (RECIPES / recipe / "wheels.txt").is_file():
        digest.update(agent_image.wheels_digest(RECIPES / recipe / agent_image.WHEELS_DIR).encode())
    return digest.hexdigest()[:12]


def prepare_context(recipe: str, log=print) -> None:
    """Build what the recipe's context needs from the host: the wheels named by its wheels.txt."""
    if (RECIPES / recipe / "wheels.txt").is_file():
        try:
            agent_image.build_wheels(RECIPES / recipe, log=log)
        except agent_image.WheelBuildError as exc:
            raise ImageBuildError(str(exc)) from None


def _built_from(tag: str) -> str | None:
    try:
        return (docker_client().images.get(tag).labels or {}).get("rock.recipe-hash")
    except docker.errors.ImageNotFound:
        return None


def build(recipe: str = "default", tag: str = DEFAULT_IMAGE, mirror: str | None = None,
          if_missing: bool = False, log=print) -> str:
    """Build the image of `docker/<recipe>/`: its packages.txt becomes the Debian base (or, with a `parent` file, the
    parent recipe's image is the base), its Dockerfile the top; wheels it names are built first. With `if_missing`, an image built from the same recipe is kept; a stale one is rebuilt."""
    parent = recipe_parent(recipe)
    if parent is not None:  # its own base is its parent's image, kept up to date first
        base_tag = build(parent, recipe_tag(parent), mirror, if_missing=True, log=log)
    prepare_context(recipe, log=log)
    wanted = recipe_hash(recipe)
    if if_missing and _built_from(tag) == wanted:
        log(f"image {tag} already present")
        return tag
    if parent is None:
        packages = recipe_packages(recipe)
        base_tag = f"rock-base-{recipe}:{hashlib.sha256(' '.join(packages).encode()).hexdigest()[:12]}"
        if not image_exists(base_tag):
            log(f"debootstrapping Debian {SUITE} for {base_tag} (about a minute)")
            build_base(base_tag, packages, mirror)
    log(f"building {tag} from docker/{recipe}/Dockerfile")
    docker_client().images.build(path=str(RECIPES / recipe), tag=tag, buildargs={"BASE": base_tag}, rm=True,
                                 labels={"rock.recipe": recipe, "rock.recipe-hash": wanted})
    return tag


def list_images() -> list[dict[str, str]]:
    rows = []
    for image in docker_client().images.list():
        for tag in image.tags:
            if tag.startswith("rock-") or image.labels.get("rock.recipe"):
                rows.append({"tag": tag, "id": image.short_id, "size_mb": f"{image.attrs['Size'] / 1e6:.0f}",
                             "created": image.attrs["Created"][:19]})
    return rows
