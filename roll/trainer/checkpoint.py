"""Checkpoints of an RL or SFT run: the trainer's (DeepSpeed model + optimizer + LR schedule, per-rank RNG) and the
driver's (step, data position, policy version, driver RNG, anything else the loop wants back).

Layout under `<run_dir>/checkpoints/`:
    step_000004/            one complete checkpoint (deepspeed/ shards, rng_rank*.pt, driver_state.pt)
    latest                  the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary directory and renamed into place only when every rank and the driver
have finished, and `latest` is replaced atomically after that, so a run killed at any moment (SIGKILL included)
leaves the previous checkpoint intact and resumable."""
from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP_DIR = re.compile(r"^step_(\d{6,})$")
DRIVER_STATE = "driver_state.pt"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class CheckpointManager:
    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def save(self, step: int, save_trainer: Callable[[str], None], driver_state: dict[str, Any]) -> Path:
        """`save_trainer(dir)` writes the trainer's part (all ranks); the driver's state goes beside it."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / step_dir_name(step)
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_trainer(str(tmp))
        torch.save({**driver_state, "step": step, "rng": rng_state()}, tmp / DRIVER_STATE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_atomic(self.root / "latest", final.name)
        self.prune()
        return final

    def prune(self) -> None:
        for path in self.complete()[: -self.keep]:
            shutil.rmtree(path, ignore_errors=True)
        for stale in self.root.glob(".step_*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if STEP_DIR.match(p.name) and (p / DRIVER_STATE).is_file()]
        return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / DRIVER_STATE).is_file():
                return candidate
        done = self.complete()
        return done[-1] if done else None


def resolve_resume(resume: str, run_dir: str | Path) -> Path:
    """`latest` (this run directory's newest checkpoint), a run directory, or a checkpoint directory."""
    if resume == "latest":
        found = CheckpointManager(Path(run_dir) / "checkpoints").latest()
        if found is None:
            raise FileNotFoundError(f"resume=latest: no complete checkpoint under {Path(run_dir) / 'checkpoints'}")
        return found
    path = Path(resume).expanduser()
    if (path / DRIVER_STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = CheckpointManager(root).latest()
        if found is not None:
            return found
    raise FileNotFoundError(f"resume={resume}: not a checkpoint, nor a directory holding one")


def load_driver_state(checkpoint: str | Path, restore_rng: bool = True) -> dict[str, Any]:
    state = torch.load(Path(checkpoint) / DRIVER_STATE, weights_only=False)
    if restore_rng:
        set_rng_state(state["rng"])
    return state
