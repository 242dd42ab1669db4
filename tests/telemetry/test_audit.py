"""Dashboards: the step's `safety/` panel has every category (0 when absent) and reaches tensorboard as scalars;
`rock audit RUN_DIR` prints a step x category table and, with --events, the episodes behind each event."""
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

import rock.cli
from iflow.trajectory import Trajectory, Turn
from rock.telemetry.events import CATEGORIES
from roll.config.training import MetricsConfig
from roll.metrics import MetricsLogger, safety_panel


def event(category, rule, record=None, **detail):
    return {"category": category, "severity": "critical", "rule": rule, "message": f"{rule} seen",
            "sandbox": "rock-a", "command_record": record, "detail": detail}


def trajectory(tid, events_by_turn, commands_by_turn=None, **safety):
    turns = [Turn(index=i, events=evs, commands=(commands_by_turn or {}).get(i, []))
             for i, evs in enumerate(events_by_turn)]
    counts = {}
    for evs in events_by_turn:
        for e in evs:
            counts[e["category"]] = counts.get(e["category"], 0) + 1
    return Trajectory(id=tid, turns=turns, outcome=safety.pop("outcome", "submitted"),
                      metadata={"safety": {"counts": counts, **safety}})


def test_the_panel_has_every_category_as_zero_and_counts_what_happened():
    quiet = safety_panel([trajectory("t0", [[]])])
    assert {f"safety/{c}" for c in CATEGORIES} <= set(quiet) and not any(quiet.values())
    mined = trajectory("t1", [[event("compute.mining", "stratum-url", stopped_command=True)]], drop=True,
                       outcome="terminated")
    blind = trajectory("t2", [[event("telemetry.blind", "tracer-dead")]], drop=True, blind=True)
    panel = safety_panel([mined, blind])
    assert panel["safety/compute.mining"] == 1 and panel["safety/telemetry.blind"] == 1
    assert panel["safety/dropped"] == 2 and panel["safety/terminated"] == 1 and panel["safety/blind"] == 1
    assert panel["safety/stopped_commands"] == 1 and panel["safety/network.egress"] == 0


def test_the_panel_reaches_tensorboard_every_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path, MetricsConfig(wandb="disabled", tensorboard=True, progress_bar=False))
    logger.log(1, safety_panel([trajectory("t0", [[]])]))
    logger.log(2, safety_panel([trajectory("t1", [[event("compute.mining", "stratum-url")]])]))
    logger.close()
    scalars = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("safety/compute.mining")
    assert [(s.step, s.value) for s in scalars] == [(1, 0.0), (2, 1.0)]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(rock.cli, "console", Console(width=250))
    steps = tmp_path / "trajectories"
    steps.mkdir()
    mining = trajectory("traj-mine", [[], [event("compute.mining", "stratum-url", 4)]],
                        {1: [{"id": 4, "sandbox": "rock-a", "command": "xmrig -o stratum+tcp://pool"}]})
    egress = trajectory("traj-egress", [[event("network.egress", "egress-attempt", 2),
                                         event("network.egress", "egress-attempt", 2)]],
                        {0: [{"id": 2, "sandbox": "rock-a", "command": "curl http://203.0.113.5"}]})
    (steps / "step_000001.jsonl").write_text(mining.model_dump_json() + "\n")
    (steps / "step_000002.jsonl").write_text(trajectory("traj-clean", [[]]).model_dump_json() + "\n")
    (steps / "step_000003.jsonl").write_text(egress.model_dump_json() + "\n" + mining.model_dump_json() + "\n")
    return tmp_path


def rows(output):
    return [[cell.strip() for cell in line.strip("│┃ ").split("│")] for line in output.splitlines() if "│" in line]


def test_rock_audit_prints_a_step_by_category_table(run_dir):
    result = CliRunner().invoke(rock.cli.app, ["audit", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "compute.mining" in result.output and "network.egress" in result.output
    assert rows(result.output) == [["1", "1", "0", "1"], ["2", "0", "0", "0"], ["3", "1", "2", "3"]]


def test_rock_audit_events_lists_the_episodes_behind_each_event(run_dir):
    result = CliRunner().invoke(rock.cli.app, ["audit", str(run_dir), "--events", "--category", "compute"])
    assert result.exit_code == 0, result.output
    listed = [(r[0], r[1], r[2], r[-1]) for r in rows(result.output)]
    assert listed == [("1", "traj-mine", "1", "xmrig -o stratum+tcp://pool"),
                      ("3", "traj-mine", "1", "xmrig -o stratum+tcp://pool")]
    exported = CliRunner().invoke(rock.cli.app, ["audit", str(run_dir), "--json"]).output.splitlines()
    assert sorted(json.loads(line)["step"] for line in exported) == [1, 3, 3, 3]
