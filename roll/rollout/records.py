"""The trajectory records `roll rollout` writes (one `iflow.trajectory.Trajectory` JSON line per episode), their
chunk annotation and the checks that a record is fit for training."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from iflow.trajectory import Trajectory, load_jsonl, save_jsonl, training_sequences

REQUIRED_METADATA = ("task", "status", "policy_versions", "chunks", "setup_commands", "verify_commands")


def annotate(trajectory: Trajectory) -> Trajectory:
    """Add `metadata.chunks`: for each turn with tokens, where its completion sits in the training sequences:
    {"turn", "sequence", "start", "end"} (end exclusive)."""
    chunks = []
    if trajectory.turns and all(t.prompt_ids is not None for t in trajectory.turns):
        for number, sequence in enumerate(training_sequences(trajectory)):
            position = 0
            ids = sequence.turn_ids
            while position < len(ids):
                if ids[position] < 0:
                    position += 1
                    continue
                start, turn = position, ids[position]
                while position < len(ids) and ids[position] == turn:
                    position += 1
                chunks.append({"turn": turn, "sequence": number, "start": start, "end": position})
    trajectory.metadata["chunks"] = chunks
    return trajectory


def check_record(trajectory: Trajectory) -> list[str]:
    """Problems that make a record unfit for training (empty when it is fine)."""
    problems = [f"metadata.{key} missing" for key in REQUIRED_METADATA if key not in trajectory.metadata]
    if trajectory.reward is None or not math.isfinite(trajectory.reward):
        problems.append("reward missing")
    for turn in trajectory.turns:
        where = f"turn {turn.index}"
        if turn.prompt_ids is None:
            problems.append(f"{where}: no prompt_ids")
        if len(turn.logprobs) != len(turn.completion_ids):
            problems.append(f"{where}: {len(turn.logprobs)} log-probs for {len(turn.completion_ids)} tokens")
        if turn.completion_ids and turn.policy_version is None:
            problems.append(f"{where}: no policy_version")
        if any(not math.isfinite(x) or x > 1e-6 for x in turn.logprobs):
            problems.append(f"{where}: log-probs must be finite and <= 0")
    covered = sorted((c["turn"], c["end"] - c["start"]) for c in trajectory.metadata.get("chunks", []))
    expected = sorted((t.index, len(t.completion_ids)) for t in trajectory.turns if t.completion_ids)
    if "chunks" in trajectory.metadata and covered != expected:
        problems.append(f"chunks {covered} do not match the turns' completions {expected}")
    return problems


def write_records(trajectories: Iterable[Trajectory], path: str | Path) -> int:
    items = [annotate(t) for t in trajectories]
    save_jsonl(items, path, append=True)
    return len(items)


def read_records(path: str | Path) -> list[Trajectory]:
    return list(load_jsonl(path))
