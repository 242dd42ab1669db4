"""Callbacks through which a user interface follows an episode. The default does nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iflow.tools.base import ToolResult
    from iflow.trajectory import Trajectory, Turn


class AgentObserver:
    def on_turn_start(self, index: int) -> None:
        """A model call is about to start."""

    def on_text_delta(self, text: str) -> None:
        """A piece of streamed model output (HTTP policies that stream)."""

    def on_completion(self, turn: Turn) -> None:
        """The completion is in and parsed (`turn.tool_call` / `turn.parse_error` are set)."""

    def on_tool_result(self, turn: Turn, result: ToolResult) -> None:
        """A tool finished (or was declined)."""

    def on_episode_end(self, trajectory: Trajectory) -> None:
        """The episode is over (`trajectory.outcome` says why)."""
