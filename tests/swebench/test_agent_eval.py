"""The checkpoint path of `roll eval swebench`: the iFlow agent with a real vLLM engine (the tiny test checkpoint)
works in each instance's sandbox, its diff is graded in a fresh container, predictions are recorded, and a re-run
with the same run id does not run the agent again."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from roll.swebench.command import SWEBenchOptions, run_swebench

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SMALL = ["agent.max_turns=2", "engine.max_model_len=1024", "agent.context.max_context_tokens=1024",
         "agent.sampling.max_tokens=32", "agent.context.max_observation_tokens=256", "ray.num_cpus=2"]


def test_checkpoint_run_records_predictions_and_resumes(local_images: dict, tiny_model_path: Path,
                                                       tmp_path: Path) -> None:
    options = SWEBenchOptions(dataset="local", run_id="agent", model=str(tiny_model_path), model_name="tiny",
                              instance_ids=["pytoolz__toolz-90001"], log_root=tmp_path / "logs", report_dir=tmp_path,
                              memory="1g", cpus=1.0, agent_overrides=SMALL, show_progress=False)
    console = Console(file=io.StringIO())
    summary = run_swebench(options, console)
    predictions = tmp_path / "logs" / "agent" / "tiny" / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["instance_id"] for r in rows] == ["pytoolz__toolz-90001"]
    assert set(rows[0]) == {"instance_id", "model_name_or_path", "model_patch"}
    trajectories = (tmp_path / "logs" / "agent" / "rollout" / "trajectories.jsonl").read_text().splitlines()
    trajectory = json.loads(trajectories[0])
    assert trajectory["task_id"] == "pytoolz__toolz-90001@agent"
    assert trajectory["reward_info"]["verifier"] == "roll.swebench.rl:verify"
    assert trajectory["metadata"]["status"] == "ok" and trajectory["turns"]
    report = summary["runs"][0]["report"]
    assert report["total_instances"] == 1 and report["resolved_instances"] == 0
    again = run_swebench(options, console)  # predictions exist: no agent, no engine
    assert len(predictions.read_text().splitlines()) == 1
    assert again["runs"][0]["report"]["submitted_ids"] == ["pytoolz__toolz-90001"]
    assert len(list((tmp_path / "logs" / "agent").glob("rollout*"))) == 1
