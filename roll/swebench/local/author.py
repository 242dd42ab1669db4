"""Make an instance from a pinned package and a mutation: inject the bug into the pristine source and hide the tests
that catch it. The gold patch takes the buggy source back to the release; the test patch puts the hidden tests back.
The instance's image is the release with both patches reversed (the base commit); FAIL_TO_PASS and PASS_TO_PASS come
from running the tests (see validate.py)."""
from __future__ import annotations

import ast
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from roll.swebench.dataset import SWEInstance
from roll.swebench.local.catalog import PackagePin
from roll.swebench.specs import official_image_name

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "swe-local", "GIT_AUTHOR_EMAIL": "swe-local@localhost",
                "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000", "GIT_COMMITTER_NAME": "swe-local",
                "GIT_COMMITTER_EMAIL": "swe-local@localhost", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000"}


class MutationError(ValueError):
    pass


def extract_sdist(sdist: Path, target: Path) -> None:
    """Unpack like the image does: the archive's top folder stripped."""
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1]:
                continue
            member.name = parts[1]
            members.append(member)
        archive.extractall(target, members=members, filter="data")


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **GIT_IDENTITY})
    if proc.returncode != 0:
        raise MutationError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    count = text.count(old)
    if count != 1:
        raise MutationError(f"{path.name}: the text to replace occurs {count} times (need exactly 1): {old[:80]!r}")
    path.write_text(text.replace(old, new))


def remove_functions(path: Path, names: list[str]) -> None:
    """Delete test functions (or `Class.method`s), decorators included, with the blank lines after them."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    spans = []
    for name in names:
        owner, _, func = name.rpartition(".")
        body = tree.body
        if owner:
            classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner]
            if not classes:
                raise MutationError(f"{path.name}: no class {owner}")
            body = classes[0].body
        found = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == func]
        if not found:
            raise MutationError(f"{path.name}: no test function {name}")
        node = found[0]
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        end = node.end_lineno
        while end < len(lines) and not lines[end].strip():
            end += 1
        spans.append((start, end))
    for start, end in sorted(spans, reverse=True):
        del lines[start:end]
    path.write_text("".join(lines))


def make_patches(sdist: Path, mutation: dict[str, Any]) -> tuple[str, str]:
    """(gold patch, test patch) for `mutation` applied to the release in `sdist`."""
    with tempfile.TemporaryDirectory(prefix="swe-author-") as tmp:
        tree = Path(tmp)
        extract_sdist(sdist, tree)
        _git(tree, "init", "-q")
        _git(tree, "add", "-A", "-f")
        _git(tree, "commit", "-q", "-m", "release")
        source_files, test_files = [], []
        for edit in mutation.get("source_edits", []):
            replace_once(tree / edit["file"], edit["old"], edit["new"])
            source_files.append(edit["file"])
        for hidden in mutation.get("hide_tests", []):
            remove_functions(tree / hidden["file"], list(hidden["functions"]))
            test_files.append(hidden["file"])
        if not source_files or not test_files:
            raise MutationError(f"{mutation['instance_id']}: a mutation needs source_edits and hide_tests")
        _git(tree, "commit", "-q", "-a", "-m", "bug")
        gold = _git(tree, "diff", "HEAD", "HEAD~1", "--", *dict.fromkeys(source_files))
        tests = _git(tree, "diff", "HEAD", "HEAD~1", "--", *dict.fromkeys(test_files))
    return gold, tests


def instance_row(pin: PackagePin, mutation: dict[str, Any], gold: str, tests: str, base_commit: str = "pending",
                 fail_to_pass: list[str] | None = None, pass_to_pass: list[str] | None = None) -> SWEInstance:
    iid = mutation["instance_id"]
    return SWEInstance(
        instance_id=iid, repo=pin.repo, base_commit=base_commit, problem_statement=mutation["problem_statement"],
        patch=gold, test_patch=tests, FAIL_TO_PASS=fail_to_pass or [], PASS_TO_PASS=pass_to_pass or [],
        version=pin.version, environment_setup_commit=base_commit, hints_text=mutation.get("hints_text", ""),
        created_at=mutation.get("created_at", "2025-01-01T00:00:00Z"), image=official_image_name(iid, None),
        log_parser="parse_log_pytest", eval_type="pass_and_fail", test_cmd=pin.test_cmd,
    )
