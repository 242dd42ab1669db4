"""Where the local set lives and what it pins: docker/swebench-local/ holds `packages.json` (one pinned sdist per
repository), `mutations.yaml` (how each instance is made), `instances.jsonl` (the dataset, official schema) and the
Dockerfiles."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from roll.swebench.dataset import SWEInstance, load_instances

LOCAL_DIR = Path(__file__).resolve().parents[3] / "docker" / "swebench-local"
PACKAGES_FILE = LOCAL_DIR / "packages.json"
MUTATIONS_FILE = LOCAL_DIR / "mutations.yaml"
DATASET_FILE = LOCAL_DIR / "instances.jsonl"
LOCAL_ALIAS = "local"
BASE_IMAGE = "rock-default:0.1.0"
ENV_IMAGE_PREFIX = "sweb.env.local"


@dataclass(frozen=True)
class PackagePin:
    repo: str
    package: str
    version: str
    sha256: str
    pythonpath: str
    test_cmd: str

    @property
    def sdist_name(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"

    @property
    def env_image(self) -> str:
        return f"{ENV_IMAGE_PREFIX}.{self.package}:{self.version}".lower()


def packages(path: Path = PACKAGES_FILE) -> dict[str, PackagePin]:
    data = json.loads(path.read_text())
    return {repo: PackagePin(repo=repo, **fields) for repo, fields in data.items()}


def mutations(path: Path = MUTATIONS_FILE) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text()) or [])


def resolve_dataset(name: str) -> str:
    """`local` names the shipped set; anything else passes through."""
    return str(DATASET_FILE) if name == LOCAL_ALIAS else name


def local_instances(instance_ids: list[str] | None = None, path: Path = DATASET_FILE) -> list[SWEInstance]:
    if not path.is_file():
        raise FileNotFoundError(f"the local set {path} is missing: generate it with `roll eval swebench-local "
                                f"author`")
    return load_instances(path, instance_ids=instance_ids)
