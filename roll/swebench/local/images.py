"""Build the local set's images offline: one environment image per pinned package (its sdist unpacked at /testbed),
one instance image per instance (bug injected, tests hidden, committed) named as the official harness names local
images (`sweb.eval.x86_64.<instance_id>:latest`). Images are cached by tag and checked against the instance's base
commit."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from rock.engine import client as docker_client
from rock.images import build as build_rock_image
from rock.images import image_exists
from roll.swebench.dataset import SWEInstance
from roll.swebench.local.catalog import BASE_IMAGE, LOCAL_DIR, PackagePin, packages
from roll.swebench.local.sdists import fetch_sdist

LABEL_BASE_COMMIT = "swebench.base_commit"
LABEL_INSTANCE = "swebench.instance_id"
LABEL_RECIPE = "swebench.recipe"


class LocalImageError(RuntimeError):
    pass


def _build(context: Path, dockerfile: str, tag: str, buildargs: dict[str, str], labels: dict[str, str],
           timeout: int = 900) -> None:
    client = docker_client()
    try:
        previous = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        previous = None
    try:
        image, _ = client.images.build(path=str(context), dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                                       labels=labels, rm=True, forcerm=True, timeout=timeout)
    except docker.errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-2000:]
        raise LocalImageError(f"building {tag} failed: {exc.msg}\n{tail}") from None
    if previous and previous != image.id:  # the superseded build, now untagged: don't let them pile up
        try:
            client.images.remove(previous, noprune=False)
        except docker.errors.APIError:
            pass  # still used by a container or another tag


def ensure_base(log: Callable[[str], None] = print) -> str:
    if not image_exists(BASE_IMAGE):
        log(f"building the sandbox base image {BASE_IMAGE}")
        build_rock_image("default", BASE_IMAGE, if_missing=True, log=log)
    return BASE_IMAGE


def env_recipe_hash(pin: PackagePin) -> str:
    digest = hashlib.sha256((LOCAL_DIR / "Dockerfile.env").read_bytes())
    digest.update(f"{pin.package}=={pin.version} {pin.sha256} {pin.pythonpath}".encode())
    return digest.hexdigest()[:16]


def ensure_env_image(pin: PackagePin, force: bool = False, log: Callable[[str], None] = print) -> str:
    tag = pin.env_image
    if not force and (image_labels(tag) or {}).get(LABEL_RECIPE) == env_recipe_hash(pin):
        return tag
    base = ensure_base(log)
    sdist = fetch_sdist(pin)
    with tempfile.TemporaryDirectory(prefix="swe-env-") as tmp:
        context = Path(tmp)
        shutil.copy(LOCAL_DIR / "Dockerfile.env", context / "Dockerfile")
        shutil.copy(sdist, context / pin.sdist_name)
        log(f"building {tag}")
        _build(context, "Dockerfile", tag, {"BASE": base, "SDIST": pin.sdist_name,
                                             "PYTHONPATH_DIRS": pin.pythonpath},
               {"swebench.package": f"{pin.package}=={pin.version}", LABEL_RECIPE: env_recipe_hash(pin)})
    return tag


def recipe_hash(pin: PackagePin) -> str:
    """Changes whenever what an instance image is made from changes (Dockerfiles, the pinned sdist)."""
    digest = hashlib.sha256()
    for name in ("Dockerfile.env", "Dockerfile.instance"):
        digest.update((LOCAL_DIR / name).read_bytes())
    digest.update(f"{pin.package}=={pin.version} {pin.sha256} {pin.pythonpath}".encode())
    return digest.hexdigest()[:16]


def image_labels(tag: str) -> dict[str, str] | None:
    try:
        return dict(docker_client().images.get(tag).labels or {})
    except docker.errors.ImageNotFound:
        return None


def image_base_commit(tag: str) -> str | None:
    labels = image_labels(tag)
    return labels.get(LABEL_BASE_COMMIT) if labels else None


def read_base_commit(tag: str) -> str:
    output = docker_client().containers.run(tag, ["git", "-C", "/testbed", "rev-parse", "HEAD"], entrypoint=[],
                                            remove=True, network_mode="none", user="root")
    return output.decode().strip()


def _build_instance(instance: SWEInstance, pin: PackagePin, env: str, tag: str, commit: str) -> None:
    with tempfile.TemporaryDirectory(prefix="swe-inst-") as tmp:
        context = Path(tmp)
        shutil.copy(LOCAL_DIR / "Dockerfile.instance", context / "Dockerfile")
        (context / "gold.diff").write_text(instance.patch)
        (context / "test.diff").write_text(instance.test_patch)
        _build(context, "Dockerfile", tag, {"ENV_IMAGE": env, "TITLE": f"{pin.package} {pin.version}",
                                            "BASE_COMMIT": commit, "INSTANCE_ID": instance.instance_id,
                                            "RECIPE": recipe_hash(pin)}, {})


def build_instance_image(instance: SWEInstance, force: bool = False, log: Callable[[str], None] = print,
                         expect_commit: bool = True) -> tuple[str, str]:
    """(image tag, base commit). The image is rebuilt when missing, forced, or labelled with another commit; the
    commit it produces must equal the instance's unless `expect_commit` is False (authoring)."""
    pins = packages()
    if instance.repo not in pins:
        raise LocalImageError(f"{instance.instance_id}: repository {instance.repo} has no pinned package in "
                              f"{LOCAL_DIR / 'packages.json'}")
    pin = pins[instance.repo]
    tag = instance.image
    if not tag:
        raise LocalImageError(f"{instance.instance_id}: the row names no image")
    labels = image_labels(tag) or {}
    current = labels.get(LABEL_BASE_COMMIT)
    fresh = labels.get(LABEL_RECIPE) == recipe_hash(pin) and current not in (None, "unknown")
    if fresh and not force and (not expect_commit or current == instance.base_commit):
        return tag, current
    env = ensure_env_image(pin, log=log)
    log(f"building {tag}")
    expected = instance.base_commit if expect_commit else "unknown"
    _build_instance(instance, pin, env, tag, expected)
    commit = read_base_commit(tag)
    if expect_commit and commit != instance.base_commit:
        docker_client().images.remove(tag, force=True)
        raise LocalImageError(f"{instance.instance_id}: the image's base commit is {commit}, the dataset says "
                              f"{instance.base_commit}; the sdist or the patches differ from those the set was made "
                              "with")
    if not expect_commit:
        _build_instance(instance, pin, env, tag, commit)  # every layer cached: only the label changes
    return tag, commit


def build_images(instances: list[SWEInstance], force: bool = False, log: Callable[[str], None] = print) -> dict[
        str, str]:
    """Build (or find) every instance's image; {instance_id: tag}."""
    return {i.instance_id: build_instance_image(i, force=force, log=log)[0] for i in instances}
