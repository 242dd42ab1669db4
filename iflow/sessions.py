"""Saved CLI sessions: one trajectory per file (`<id>.jsonl`, one JSON line), rewritten atomically after every
turn, so an interrupted session is still complete up to its last turn and can be resumed."""
from __future__ import annotations

import os
from pathlib import Path

from iflow.trajectory import Trajectory, load_jsonl


class SessionStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, session_id: str) -> Path:
        if not session_id or "/" in session_id or session_id.startswith("."):
            raise ValueError(f"invalid session id {session_id!r}")
        return self.directory / f"{session_id}.jsonl"

    def save(self, trajectory: Trajectory) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(trajectory.id)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(trajectory.to_jsonl() + "\n")
        os.replace(temporary, target)
        return target

    def list(self) -> list[Path]:
        """Saved sessions, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"), key=lambda path: path.stat().st_mtime, reverse=True)

    def load(self, session_id: str) -> Trajectory:
        """A saved session by id, or the newest one for "latest"."""
        if session_id == "latest":
            sessions = self.list()
            if not sessions:
                raise FileNotFoundError(f"no saved sessions in {self.directory}")
            path = sessions[0]
        else:
            path = self.path(session_id)
            if not path.exists():
                known = ", ".join(p.stem for p in self.list()[:5]) or "none"
                raise FileNotFoundError(f"no session {session_id!r} in {self.directory} (recent: {known})")
        trajectories = list(load_jsonl(path))
        if not trajectories:
            raise ValueError(f"session file {path} is empty")
        return trajectories[-1]
