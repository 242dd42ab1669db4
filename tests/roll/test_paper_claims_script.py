"""scripts/experiments/paper_claims.py: every arm's command is a valid config with the arm's difference and nothing
else, shared arms are the same run, and the summary of finished runs becomes a figure and a verdict table (the runs
themselves are the experiment: ~10 minutes each)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.config import load_config
from tests.roll.script_import import imported_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "experiments" / "paper_claims.py"


@pytest.fixture(scope="module")
def claims():
    with imported_script(SCRIPT) as module:
        yield module


def _config(command: list[str], model: Path):
    assert command[1:4] == ["train", "--config-name", "main_rl"]
    overrides = [f"model.path={model}" if o.startswith("model.path=") else o for o in command[4:]]
    return load_config("main_rl", overrides)


def test_every_arm_is_a_valid_config_that_differs_only_where_the_claim_says(claims, tiny_model_path, tmp_path):
    out = tmp_path / "claims"
    configs = {(name, arm): _config(claims.arm_command(out / name, claim, arm, 3)[1], tiny_model_path)
               for name, claim in claims.CLAIMS.items() for arm in claim["arms"]}
    ipa = configs["baseline", "ipa"]
    assert (ipa.run.seed, ipa.trainer.seed, ipa.engine.seed, ipa.task.seed) == (3, 3, 3, 3)
    assert ipa.task.options.hops == 3 and ipa.rollout.groups_per_step == 2 and not ipa.loop.eval_start
    assert configs["baseline", "grpo"].algorithm.name == "grpo"
    levels = {arm: configs["granularity", arm].algorithm.params.get("ratio_level", "chunk")
              for arm in ("token", "chunk", "sequence")}
    assert levels == {"token": "token", "chunk": "chunk", "sequence": "sequence"}
    assert all(configs["granularity", arm].algorithm.reward_baseline == "rloo" for arm in levels)
    resampled = configs["resampling", "resampling"].rollout.resampling
    assert resampled.enabled and resampled.data == [str(out / "resampling" / "golden-s3.jsonl")]
    plain_dir, plain = claims.arm_command(out / "resampling", claims.CLAIMS["resampling"], "plain", 3)
    assert (plain_dir, plain) == claims.arm_command(out / "baseline", claims.CLAIMS["baseline"], "ipa", 3)


def _finished_run(run_dir: Path, success: list[float], per_task: dict[str, float]) -> None:
    run_dir.mkdir(parents=True)
    rows = [{"step": i + 1, "success_rate": s, "grad_norm": 2.0 * (i + 1), "step_s": 100.0}
            for i, s in enumerate(success)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    solved = sum(v >= 1.0 for v in per_task.values())
    (run_dir / "eval.json").write_text(json.dumps({"final": {"solved": solved, "total": len(per_task),
                                                             "per_task": per_task}}))


def test_finished_runs_become_a_figure_and_a_table(claims, tmp_path):
    from rich.console import Console

    start = {"solved": 2, "total": 4, "per_task": {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}}
    _finished_run(tmp_path / "x-s0", [0.5, 0.75], {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0})
    _finished_run(tmp_path / "x-s1", [0.25, 0.5], {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0})
    runs = {"x": {0: claims.read_run(tmp_path / "x-s0"), 1: claims.read_run(tmp_path / "x-s1")}}
    assert [s["success_rate"] for s in runs["x"][0]["steps"]] == [0.5, 0.75]
    figure = claims.plot_claim({"title": "t", "start": start, "runs": runs}, tmp_path / "fig.png")
    assert figure.stat().st_size > 10_000
    console = Console(width=200, record=True)
    console.print(claims.verdict_table("t", start, runs))
    row = next(line for line in console.export_text().splitlines() if line.strip().startswith("│ x"))
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:6] == ["x", "2", "3 1", "2.0", "1/0 0/1", "0 0"]  # solved, fixed/broken, worst quartile (d) solved
    assert claims.worst_quartile({"start": start, "runs": runs}) == ["d"]


def test_an_arm_is_compared_with_the_reference_arm_per_seed_and_pooled(claims, tmp_path):
    from rich.console import Console

    start = {"solved": 0, "total": 4, "per_task": dict.fromkeys("abcd", 0.0)}
    solved = {("ref", 0): "a", ("ref", 1): "ab", ("new", 0): "abcd", ("new", 1): "bcd", ("new", 2): "a"}
    for (arm, seed), tasks in solved.items():
        _finished_run(tmp_path / f"{arm}-s{seed}", [0.5], {t: float(t in tasks) for t in "abcd"})
    runs = {arm: {seed: claims.read_run(tmp_path / f"{arm}-s{seed}") for a, seed in solved if a == arm}
            for arm in ("ref", "new")}
    # seed 0: new fixes b, c, d; seed 1: new fixes c, d and breaks a; seed 2 has no reference run
    assert claims.versus(runs, "new", "ref") == "3/0 2/1 (p 0.22)"  # 5 fixed, 1 broken: 2 * 7/64
    console = Console(width=250, record=True)
    console.print(claims.verdict_table("t", start, runs, "ref"))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    assert rows["new"][4] == "3/0 2/1 (p 0.22)" and rows["ref"][4] == "-"
    assert "vs ref" in text


def test_the_worst_quartile_is_ranked_by_every_arm_not_by_the_reference_alone(claims):
    def run(tasks: str) -> dict:
        return {"final": {"per_task": {t: float(t in tasks) for t in "abcd"}}}

    start = {"per_task": dict.fromkeys("abcd", 0.0)}
    runs = {"ref": {0: run("ab")}, "new": {0: run("abc"), 1: run("abc")}}
    assert claims.worst_quartile({"start": start, "runs": runs}) == ["d"]  # by ref alone, c and d tie: c
    assert claims.worst_quartile({"start": start, "runs": {"ref": runs["ref"]}}) == ["c"]


def test_the_record_keeps_finished_runs_only_for_the_same_start_and_setting(claims, tmp_path):
    start = {"solved": 1, "total": 2, "per_task": {"a": 1.0, "b": 0.0}, "weights_sha256": "ab12"}
    run = {"overrides": ["run.seed=0"], "steps": [{"step": 1, "success_rate": 0.5}],
           "final": {"solved": 2, "total": 2, "per_task": {"a": 1.0, "b": 1.0}}}
    path = tmp_path / "claims" / "runs.json"
    claims.save_record(path, start, {"baseline/ipa-s0": run})
    assert claims.load_record(path, start) == {"baseline/ipa-s0": run}
    other_start = {**start, "weights_sha256": "cd34"}
    assert claims.load_record(path, other_start) == {}
    record = json.loads(path.read_text())
    record["setting"] = record["setting"][1:]
    path.write_text(json.dumps(record))
    assert claims.load_record(path, start) == {}
    assert claims.load_record(tmp_path / "missing.json", start) == {}
