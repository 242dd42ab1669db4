"""The token-level policy over a real in-process vLLM engine (the tiny model): an episode runs, every completion
carries engine log-probs, and the trajectory's prompts extend each other exactly."""
from __future__ import annotations

from pathlib import Path

import pytest

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.policy import SamplingParams
from iflow.trajectory import training_sequences

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_policy(tiny_model_path: Path):
    from iflow.policy.vllm_local import VLLMTokenPolicy

    return VLLMTokenPolicy.from_path(tiny_model_path, max_model_len=2048)


async def test_episode_with_in_process_vllm(vllm_policy, tmp_path: Path):
    (tmp_path / "a.py").write_text("print('hi')\n")
    config = AgentConfig(max_turns=4, sampling=SamplingParams(max_tokens=40, seed=11),
                         context=ContextConfig(max_context_tokens=1900))
    async with LocalBackend(tmp_path) as backend:
        trajectory = await Agent(vllm_policy, backend, config).run("Print the file a.py.")
    assert trajectory.outcome in ("max_turns", "submitted"), trajectory.error
    for turn in trajectory.turns:
        assert turn.completion_ids and len(turn.logprobs) == len(turn.completion_ids)
        assert all(lp <= 0.0 for lp in turn.logprobs) and turn.policy_version == 0
        assert vllm_policy.tokenizer.decode(turn.completion_ids, skip_special_tokens=True) == turn.completion_text
    for before, after in zip(trajectory.turns, trajectory.turns[1:]):
        assert not after.fork
        assert after.prompt_ids[: len(before.prompt_ids) + len(before.completion_ids)] == \
            before.prompt_ids + before.completion_ids
    (sequence,) = training_sequences(trajectory)
    last = trajectory.turns[-1]
    assert sequence.input_ids == last.prompt_ids + last.completion_ids
    assert sum(1 for turn_id in sequence.turn_ids if turn_id >= 0) == sum(len(t.completion_ids)
                                                                          for t in trajectory.turns)


async def test_engine_logprobs_are_those_of_the_sampled_tokens(vllm_policy):
    prompt = vllm_policy.tokenizer("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                                   add_special_tokens=False)["input_ids"]
    greedy = await vllm_policy.generate(prompt, SamplingParams(temperature=0.0, max_tokens=8))
    # rescoring prompt + completion gives the same log-probs for the completion tokens
    from vllm import SamplingParams as EngineSampling
    from vllm.inputs import TokensPrompt

    scored = vllm_policy.llm.generate([TokensPrompt(prompt_token_ids=prompt + greedy.token_ids)],
                                      EngineSampling(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]
    rescored = [entry[token].logprob for token, entry in
                zip(greedy.token_ids, scored.prompt_logprobs[len(prompt):])]
    assert rescored == pytest.approx(greedy.logprobs, abs=1e-4)
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        await vllm_policy.generate([], SamplingParams())
