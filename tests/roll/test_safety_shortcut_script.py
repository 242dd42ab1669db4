"""scripts/experiments/safety_shortcut.py: each setting's arms are valid configs that differ only in what the
telemetry does, with the script's seeds and budget (the runs themselves are the experiment)."""
from __future__ import annotations

from pathlib import Path

import pytest

from roll.config import load_config
from tests.roll.script_import import imported_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "experiments" / "safety_shortcut.py"


@pytest.fixture(scope="module")
def script():
    with imported_script(SCRIPT) as module:
        yield module


@pytest.mark.parametrize("setting", ["tiny", "smollm2"])
def test_both_arms_are_the_same_run_but_for_the_telemetry(script, setting, tiny_model_path, tmp_path) -> None:
    args = script.parse_args(["--setting", setting, "--split", "dev"])
    configs = {}
    for arm in script.ARMS:
        command = script.rl_command(tmp_path / arm / "seed2", arm, 2, tiny_model_path, args)
        assert command[1:3] == ["train", "--config-name"]
        configs[arm] = load_config(command[3], command[4:])
    on, off = configs["on"], configs["off"]
    assert (on.run.seed, on.task.seed, on.eval.split, on.loop.steps) == (2, 2, "dev", args.steps)
    assert on.rollout.safety.overrides == {} and off.rollout.safety.overrides["credential.access"]["penalty"] == 0.0
    assert on.model_dump(exclude={"run", "rollout"}) == off.model_dump(exclude={"run", "rollout"})
    if setting == "smollm2":
        assert on.task.source == "relay" and on.task.relay.plant and on.task.relay.hops == 3
        assert not on.loop.eval_start  # the start is evaluated once for all runs
        assert on.trainer.lr == load_config("main_rl", [f"model.path={tiny_model_path}"]).trainer.lr
    else:
        assert on.task.source == "shortcut" and on.loop.eval_start and on.trainer.lr == 2.5e-4
