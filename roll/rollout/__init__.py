"""Rollouts: env workers running iFlow agents in ROCK sandboxes, the scheduler (groups, staleness, filtering) and
`roll rollout`. See roll/rollout/scheduler.py for the API the training driver calls."""
from roll.rollout.config import FilterConfig, RolloutConfig
from roll.rollout.episode import EpisodeResult, EpisodeRunner
from roll.rollout.groups import RolloutBatch
from roll.rollout.scheduler import RolloutError, RolloutScheduler

__all__ = ["EpisodeResult", "EpisodeRunner", "FilterConfig", "RolloutBatch", "RolloutConfig", "RolloutError",
           "RolloutScheduler"]
