"""Bridges to the official harness (the `swebench` package, a dev dependency): an instance as the swebench 5.x row
its `make_test_spec` takes, with the same image and eval script our harness uses. Used by the benchmark and tests to
run the official `run_instance` on the same instance and image."""
from __future__ import annotations

from typing import Any

from roll.swebench.dataset import SWEInstance
from roll.swebench.eval_script import eval_script
from roll.swebench.specs import ImagePolicy, eval_spec


def official_row(instance: SWEInstance, images: ImagePolicy | None = None) -> dict[str, Any]:
    spec = eval_spec(instance, images)
    return {**instance.to_row(), "image": spec.image, "eval_script": eval_script(instance),
            "log_parser": spec.log_parser, "eval_type": spec.eval_type}


def official_test_spec(instance: SWEInstance, images: ImagePolicy | None = None) -> Any:
    try:
        from swebench.harness.utils import make_test_spec
    except ImportError:
        raise ImportError("the official harness is not installed: pip install 'swebench>=5' (the dev extra)") from None
    return make_test_spec(official_row(instance, images))
