"""Fixtures for the SWE-bench tests: a classic-schema row, and the local set's images (built once per session,
cached by tag; building needs Docker and downloads the pinned sdists from the package index)."""
from __future__ import annotations

import pytest

from roll.swebench.dataset import SWEInstance

TEST_PATCH = """diff --git a/tests/test_core.py b/tests/test_core.py
--- a/tests/test_core.py
+++ b/tests/test_core.py
@@ -1,2 +1,3 @@
 import x
+def test_new(): assert x.f()
diff --git a/tests/data/new_case.json b/tests/data/new_case.json
new file mode 100644
--- /dev/null
+++ b/tests/data/new_case.json
@@ -0,0 +1 @@
+{}
diff --git a/tests/test_extra.py b/tests/test_extra.py
new file mode 100644
--- /dev/null
+++ b/tests/test_extra.py
@@ -0,0 +1 @@
+def test_extra(): pass
"""


@pytest.fixture
def classic_row() -> dict:
    return {"instance_id": "owner__repo-1", "repo": "owner/repo", "base_commit": "abc123", "problem_statement": "p",
            "patch": "diff --git a/x.py b/x.py\n", "test_patch": TEST_PATCH,
            "FAIL_TO_PASS": '["tests/test_core.py::test_new"]', "PASS_TO_PASS": "[]", "version": "1.0",
            "environment_setup_commit": "abc123", "hints_text": "", "created_at": "2024-01-01"}


@pytest.fixture
def classic(classic_row: dict) -> SWEInstance:
    return SWEInstance.model_validate({**classic_row, "test_cmd": "pytest -rA"})


@pytest.fixture(scope="session")
def local_images() -> dict[str, str]:
    """Every local-set image, built if missing (offline layers; sdists from the package index)."""
    from rock.engine import client

    client()  # a clear error when no engine answers
    from roll.swebench.local.catalog import local_instances
    from roll.swebench.local.images import build_images

    return build_images(local_instances(), log=lambda message: None)
