"""Engines: token ids in, token ids + engine log-probs + policy version out; new weights in memory.

Log-probs are checked against a float32 transformers forward pass over the same tokens."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from iflow.policy.base import SamplingParams
from roll.engines.base import Sampling
from roll.engines.config import EngineConfig

PROMPT = [2043, 536, 198, 40, 41, 42]
TOL = 1e-4


@pytest.fixture(scope="module")
def hf_model(tiny_model_path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def reference_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(-1)
    return logprobs[len(prompt) - 1:-1].gather(-1, torch.tensor(completion)[:, None])[:, 0]


def perturbed(model, scale: float = 0.05, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}


def test_sampling_rejects_unknown_keys() -> None:
    assert Sampling.from_any(SamplingParams(max_tokens=7)).max_tokens == 7
    with pytest.raises(ValueError, match="temprature"):
        Sampling.from_any({"temprature": 1.0})


def test_vllm_backend_missing_is_an_error_not_a_fallback(monkeypatch, tiny_model_path: Path) -> None:
    from roll.engines import actor

    monkeypatch.setattr(actor, "vllm_available", lambda: False)  # fake: pretend vllm cannot be imported
    with pytest.raises(RuntimeError, match="engine=hf"):
        actor.build_engine(tiny_model_path, EngineConfig(backend="vllm"))
    fallback = actor.build_engine(tiny_model_path, EngineConfig(backend="auto"))  # explicit opt-in to the fallback
    try:
        assert fallback.name == "hf"
    finally:
        fallback.close()


def test_hf_engine_batches_and_matches_transformers(tiny_model_path: Path, hf_model) -> None:
    from roll.engines.hf_engine import HFEngine

    engine = HFEngine(tiny_model_path, EngineConfig(backend="hf", hf_max_batch=4, hf_batch_wait_ms=50))
    try:
        async def burst():
            return await asyncio.gather(*(engine.generate(PROMPT + [50 + i], {"max_tokens": 12}, timeout=60)
                                          for i in range(6)))
        results = asyncio.run(burst())
        for i, result in enumerate(results):
            assert len(result["token_ids"]) == len(result["logprobs"]) >= 1
            assert result["policy_version"] == 0 and result["finish_reason"] in ("stop", "length")
            ref = reference_logprobs(hf_model, PROMPT + [50 + i], result["token_ids"])
            assert torch.allclose(torch.tensor(result["logprobs"]), ref, atol=TOL)
        new = perturbed(hf_model)
        assert engine.update_weights_sync(new, version=3) == 3
        after = engine.generate_sync(PROMPT, {"max_tokens": 8}, timeout=60)
        assert after["policy_version"] == 3
        changed = type(hf_model)(hf_model.config)
        changed.load_state_dict(new)
        assert torch.allclose(torch.tensor(after["logprobs"]),
                              reference_logprobs(changed.eval(), PROMPT, after["token_ids"]), atol=TOL)
        (recomputed,) = engine.compute_logprobs_sync([PROMPT + after["token_ids"]], timeout=60)
        assert recomputed[len(PROMPT) - 1:] == pytest.approx(after["logprobs"], abs=TOL)
    finally:
        engine.close()


@pytest.fixture
def vllm_group(vllm_engines, hf_model):
    """The shared engine; the tiny model's weights are pushed back afterwards (other tests rely on them)."""
    yield vllm_engines
    vllm_engines.update_weights(hf_model.state_dict(), version=vllm_engines.policy_version() + 1)


def test_vllm_actor_serves_the_token_policy(vllm_group, tiny_model_path: Path, hf_model) -> None:
    import ray
    from transformers import AutoTokenizer

    from roll.engines.policy import RayTokenPolicy

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    policy = RayTokenPolicy(vllm_group.pick(), tokenizer, timeout=120)

    async def burst():
        return await asyncio.gather(*(policy.generate(PROMPT + [60 + i], SamplingParams(max_tokens=16, seed=i))
                                      for i in range(4)))
    completions = asyncio.run(burst())
    for i, completion in enumerate(completions):
        assert completion.policy_version == vllm_group.policy_version()
        assert len(completion.token_ids) == len(completion.logprobs)
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        ref = reference_logprobs(hf_model, PROMPT + [60 + i], completion.token_ids)
        assert torch.allclose(torch.tensor(completion.logprobs), ref, atol=TOL)
    seqs = [PROMPT + [60 + i] + c.token_ids for i, c in enumerate(completions)]
    recomputed = ray.get(vllm_group.actors[0].compute_logprobs.remote(seqs), timeout=120)
    for seq, values, completion in zip(seqs, recomputed, completions):
        assert len(values) == len(seq) - 1
        assert values[len(PROMPT):] == pytest.approx(completion.logprobs, abs=TOL)
    assert ray.get(vllm_group.actors[0].get_stats.remote())["completion_tokens"] >= sum(
        len(c.token_ids) for c in completions)


def test_vllm_weight_update_drains_and_tags_versions(vllm_group, hf_model) -> None:
    import ray

    actor = vllm_group.actors[0]
    before = vllm_group.policy_version()
    in_flight = actor.generate.remote(PROMPT, {"max_tokens": 200, "seed": 3, "temperature": 1.0})
    new = perturbed(hf_model, seed=before + 1)
    assert vllm_group.update_weights(new, version=before + 1) == before + 1
    old_result = ray.get(in_flight, timeout=120)
    assert old_result["policy_version"] == before  # produced entirely by the old weights...
    assert torch.allclose(torch.tensor(old_result["logprobs"]),  # ...the tiny model's own
                          reference_logprobs(hf_model, PROMPT, old_result["token_ids"]), atol=TOL)
    new_result = ray.get(actor.generate.remote(PROMPT, {"max_tokens": 16, "seed": 3}), timeout=120)
    assert new_result["policy_version"] == before + 1 == vllm_group.policy_version()
    changed = type(hf_model)(hf_model.config)
    changed.load_state_dict(new)
    assert torch.allclose(torch.tensor(new_result["logprobs"]),
                          reference_logprobs(changed.eval(), PROMPT, new_result["token_ids"]), atol=TOL)


def test_hf_engine_refuses_stale_versions_and_empty_pushes(tiny_model_path: Path, hf_model) -> None:
    from roll.engines.hf_engine import HFEngine

    engine = HFEngine(tiny_model_path, EngineConfig(backend="hf", hf_batch_wait_ms=0))
    try:
        own = hf_model.state_dict()
        with pytest.raises(ValueError, match="no weights"):
            engine.update_weights_sync({}, version=1)
        with pytest.raises(ValueError, match="already serves version 0"):
            engine.update_weights_sync(own, version=0)
        assert engine.update_weights_sync(own, version=4) == 4
        with pytest.raises(ValueError, match="already serves version 4"):  # an older push never overwrites newer
            engine.update_weights_sync(perturbed(hf_model), version=3)
        names = list(own)
        engine.update_weights_sync({n: own[n] for n in names[:2]}, version=6, final=False)
        with pytest.raises(ValueError, match="middle of the update to version 6"):
            engine.update_weights_sync({n: own[n] for n in names[2:]}, version=7)
        assert engine.update_weights_sync({n: own[n] for n in names[2:]}, version=6) == 6
        result = engine.generate_sync(PROMPT, {"max_tokens": 4}, timeout=60)
        assert result["policy_version"] == 6
        assert torch.allclose(torch.tensor(result["logprobs"]),  # the refused pushes changed no weight
                              reference_logprobs(hf_model, PROMPT, result["token_ids"]), atol=TOL)
    finally:
        engine.close()


def test_vllm_refuses_a_stale_push_and_keeps_serving(vllm_group, hf_model) -> None:
    import ray

    from roll.engines.actor import verify_versions

    current = vllm_group.policy_version()
    with pytest.raises(ValueError, match=f"already serves version {current}"):
        vllm_group.update_weights(perturbed(hf_model, seed=9), version=current)
    with pytest.raises(ValueError, match="no weights"):
        vllm_group.update_weights({}, version=current + 1)
    assert vllm_group.policy_version() == current
    result = ray.get(vllm_group.actors[0].generate.remote(PROMPT, {"max_tokens": 8}), timeout=120)  # not paused
    assert result["policy_version"] == current
    assert torch.allclose(torch.tensor(result["logprobs"]),
                          reference_logprobs(hf_model, PROMPT, result["token_ids"]), atol=TOL)
    verify_versions(vllm_group.actors, current)
    with pytest.raises(Exception, match=f"did not take: engine\\(s\\) #0 serves version {current}"):
        verify_versions(vllm_group.actors, current + 1)
