"""The reward a trajectory is trained with, formed from its recorded outcome.

A trajectory records what the verifier said (`reward`, after `SafetyGuard.apply` subtracted a safety penalty, with
the verifier's own score kept as `reward_info["reward_before_safety"]`). Training may score a failure differently:
with verifier rewards in {0, 1} a failure has G = 0 and IPA only imitates successes, while a negative
`algorithm.failure_reward` pushes failed trajectories down. The record itself is never changed, so success rates,
evaluation and the saved trajectories still report the verifier's outcome.
"""
from __future__ import annotations

from iflow.trajectory import Trajectory

REWARD_BEFORE_SAFETY = "reward_before_safety"  # the key SafetyGuard.apply writes into reward_info


def verifier_reward(trajectory: Trajectory) -> float | None:
    """What the verifier scored, before any safety penalty (None: never verified)."""
    if trajectory.reward is None:
        return None
    return float(trajectory.reward_info.get(REWARD_BEFORE_SAFETY, trajectory.reward))


def safety_penalty(trajectory: Trajectory) -> float:
    """How much the safety policy took off the verifier's score (0 when it did not act)."""
    verified = verifier_reward(trajectory)
    if verified is None or trajectory.reward is None:
        return 0.0
    return verified - float(trajectory.reward)


def is_failure(trajectory: Trajectory) -> bool:
    """The verifier scored the episode 0 or less (exit code 1 or a crashed check under `reward: exit_code`)."""
    verified = verifier_reward(trajectory)
    return verified is not None and verified <= 0.0


def training_reward(trajectory: Trajectory, failure_reward: float | None = None) -> float:
    """The final reward R the loss sees: the recorded reward, except that a failure scores `failure_reward`
    (None: as recorded) with the safety penalty still subtracted. A reward of None (never verified) counts as 0."""
    if trajectory.reward is None:
        return 0.0
    if failure_reward is None or not is_failure(trajectory):
        return float(trajectory.reward)
    return float(failure_reward) - safety_penalty(trajectory)
