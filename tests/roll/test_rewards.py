"""algorithm.failure_reward: a failed trajectory is trained with a negative reward (safety penalty on top), so IPA
pushes its tokens down, while the trajectory keeps the verifier's outcome."""
from __future__ import annotations

import pytest
import torch

from iflow.trajectory import Trajectory, Turn
from ipa import chunk_returns, compute_loss, local_denominator
from rock.telemetry import Verdict
from roll.config import load_config
from roll.rewards import training_reward
from roll.safety import SafetyGuard
from roll.trainer.batch import build_samples, plan


def _trajectory(tid: str, reward: float, turns: int = 2, group: str = "g") -> Trajectory:
    records, prompt = [], [1, 2, 3]
    for k in range(turns):
        completion = [10 * k + 1, 10 * k + 2, 10 * k + 3]
        records.append(Turn(index=k, prompt_ids=list(prompt), completion_ids=completion, logprobs=[-0.5] * 3))
        prompt = prompt + completion + [100 + k, 101 + k]
    return Trajectory(id=tid, task_id=group, group_id=group, turns=records, reward=reward)


def _penalized(tid: str, verified: float, penalty: float) -> Trajectory:
    trajectory = _trajectory(tid, verified)
    SafetyGuard.apply(trajectory, Verdict(penalty=penalty))  # the real penalty path of an episode
    return trajectory


def _batch(trajectories: list[Trajectory], failure_reward: float | None, reward_baseline: str = "none"):
    samples = build_samples(trajectories, error_masking=False, failure_reward=failure_reward,
                            reward_baseline=reward_baseline).samples
    ((mb,),) = plan(samples, pad_id=0, max_tokens=10_000, world_size=1)[0]
    return samples, mb


def test_training_reward_maps_failures_and_keeps_the_safety_penalty() -> None:
    success, failure = _trajectory("s", 1.0), _trajectory("f", 0.0)
    penalized_failure, penalized_success = _penalized("pf", 0.0, 0.5), _penalized("ps", 1.0, 0.5)
    assert training_reward(failure, None) == 0.0 and training_reward(success, None) == 1.0
    assert training_reward(failure, -1.0) == -1.0
    assert training_reward(success, -1.0) == 1.0
    assert training_reward(penalized_failure, -1.0) == pytest.approx(-1.5)
    assert training_reward(penalized_success, -1.0) == pytest.approx(0.5)
    unverified = _trajectory("u", 0.0)
    unverified.reward = None
    assert training_reward(unverified, -1.0) == 0.0

    samples, _ = _batch([success, failure, penalized_failure], failure_reward=-1.0)
    assert [s.reward for s in samples] == pytest.approx([1.0, -1.0, -1.5])
    assert failure.reward == 0.0 and penalized_failure.reward == pytest.approx(-0.5)  # the record is intact
    assert penalized_failure.reward_info["reward_before_safety"] == 0.0


def _token_gradients(trajectories: list[Trajectory], failure_reward: float | None, reward_baseline: str = "none"):
    """The micro-batch and d loss / d log π of every token, one IPA loss on π_θ = π_old."""
    _, mb = _batch(trajectories, failure_reward, reward_baseline)
    mb.old_logp = mb.engine_logp.clone()
    logp = mb.engine_logp.clone().requires_grad_(True)
    params = {"gamma": 0.9, "global_denominator": float(local_denominator(mb.loss_mask, "token-mean"))}
    out = compute_loss("ipa", mb.loss_inputs(logp), **params)
    out.loss.backward()
    return mb, logp.grad


def _failure_token_gradient(failure_reward: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunk returns of the failed row, and d loss / d log π on its trained tokens."""
    mb, grad = _token_gradients([_trajectory("s", 1.0), _trajectory("f", 0.0)], failure_reward)
    failed = int(torch.nonzero(mb.rewards <= 0)[0])
    returns = chunk_returns(mb.rewards, mb.chunk_ids, 0.9, mb.chunk_rewards, trajectory_chunks=mb.trajectory_chunks)
    tokens = mb.loss_mask[failed]
    return returns[failed], grad[failed][tokens], mb.rewards


def test_a_failure_reward_of_minus_one_pushes_the_failed_trajectory_down() -> None:
    returns, grad, rewards = _failure_token_gradient(-1.0)
    assert sorted(rewards.tolist()) == [-1.0, 1.0]
    assert (returns < 0).all()  # both chunks of the failure: G_k = γ^(K-k)·(-1)
    # gradient descent moves log π by -grad: every token of the failed trajectory goes down
    assert grad.numel() == 6 and (grad > 0).all()


def test_without_a_failure_reward_failures_get_no_gradient() -> None:
    returns, grad, _ = _failure_token_gradient(None)
    assert (returns == 0).all() and (grad == 0).all()


def test_the_config_key_composes_for_every_algorithm() -> None:
    for name in ("ipa", "grpo", "gspo", "ppo", "reinforce"):
        assert load_config("train", [f"algorithm={name}"]).algorithm.failure_reward is None
    assert load_config("train", ["algorithm.failure_reward=-1"]).algorithm.failure_reward == -1.0


def test_a_group_mean_baseline_pushes_below_average_episodes_down_and_ignores_all_equal_groups() -> None:
    batch = [_trajectory("s1", 1.0, group="mixed"), _trajectory("s2", 1.0, group="mixed"),
             _trajectory("s3", 1.0, group="mixed"), _trajectory("f", 0.0, group="mixed"),
             _trajectory("a1", 1.0, group="solved"), _trajectory("a2", 1.0, group="solved")]
    mb, grad = _token_gradients(batch, failure_reward=None, reward_baseline="mean")
    assert mb.rewards.tolist() == pytest.approx([0.25, 0.25, 0.25, -0.75, 0.0, 0.0])
    tokens = mb.loss_mask
    assert (grad[0][tokens[0]] < 0).all()  # an above-average success goes up ...
    assert (grad[3][tokens[3]] > 0).all()  # ... the failure beside it goes down, with no failure_reward set
    assert (grad[4:][tokens[4:]] == 0).all()  # a group that all succeeded carries no signal
    assert batch[3].reward == 0.0  # the record keeps the verifier's outcome
    rloo = [s.reward for s in build_samples(batch, error_masking=False, reward_baseline="rloo").samples]
    assert rloo == pytest.approx([1 / 3, 1 / 3, 1 / 3, -1.0, 0.0, 0.0])


def test_the_reward_baseline_key_is_for_ipa_only() -> None:
    assert load_config("train", []).algorithm.reward_baseline == "none"
    assert load_config("train", ["algorithm.reward_baseline=mean"]).algorithm.reward_baseline == "mean"
    with pytest.raises(Exception, match="reward_baseline"):
        load_config("train", ["algorithm=grpo", "algorithm.reward_baseline=mean"])
