"""The DeepSpeed trainer actors: every ZeRO stage and world size computes the same update as plain torch, two
actors joined in one gloo group included, and every algorithm of `ipa` trains one step."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.trainer.batch import Sample
from roll.trainer.update import attach, loss_params, prepare, run_update

LR = 1e-3
STEPS = 2


def make_samples(vocab: int, n: int = 8, seed: int = 0) -> list[Sample]:
    """Two-turn sequences with a prompt, an observation between the turns, rewards 0/1 in groups of four."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        prompt, obs = rng.randint(4, 8), rng.randint(2, 4)
        t0, t1 = rng.randint(3, 9), rng.randint(3, 9)
        turn_ids = [-1] * prompt + [0] * t0 + [-1] * obs + [1] * t1
        ids = [rng.randrange(5, vocab - 10) for _ in turn_ids]
        logps = [-7.5 if t >= 0 else 0.0 for t in turn_ids]
        samples.append(Sample(ids, turn_ids, logps, [int(t >= 0) for t in turn_ids], float(i % 3 == 0), i // 4, i))
    return samples


def trainer_config(world_size: int, stage: int) -> TrainerConfig:
    return TrainerConfig(world_size=world_size, zero_stage=stage, lr=LR, max_tokens_per_microbatch=48, seed=0)


def reference_update(model_path: Path, samples: list[Sample], algo: AlgorithmConfig) -> tuple[list[float], dict]:
    """The same two steps in plain torch: no DeepSpeed, no Ray, one process, full-vocabulary logits."""
    from transformers import AutoModelForCausalLM

    import ipa
    from roll.trainer.logprobs import shifted_logprobs

    def forward_logprobs(model, input_ids, attention_mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return shifted_logprobs(logits, input_ids), None

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    update = prepare(samples, algo, trainer_config(1, 0), pad_id=0)
    micro_batches = [mb for mini in update.plan for rank in mini for mb in rank]
    with torch.no_grad():
        for mb in micro_batches:
            mb.old_logp = forward_logprobs(model, mb.input_ids, mb.attention_mask)[0]
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        total = 0.0
        for mb in micro_batches:
            logp, _ = forward_logprobs(model, mb.input_ids, mb.attention_mask)
            inputs = ipa.LossInputs(logp=logp, old_logp=mb.old_logp, engine_logp=mb.engine_logp,
                                    assistant_mask=mb.loss_mask, chunk_ids=ipa.chunk_index(mb.loss_mask, mb.turn_ids),
                                    rewards=mb.rewards, group_ids=mb.group_ids)
            out = ipa.compute_loss(algo.name, inputs, global_denominator=update.denominators[0], **loss_params(algo))
            out.loss.backward()
            total += float(out.loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(total)
    return losses, {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture(scope="module")
def reference(tiny_model_path: Path):
    from transformers import AutoConfig

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size)
    from transformers import AutoModelForCausalLM

    initial = {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_pretrained(tiny_model_path).named_parameters()}
    losses, weights = reference_update(tiny_model_path, samples, AlgorithmConfig(name="ipa"))
    return samples, losses, weights, initial


@pytest.mark.parametrize("world_size,stage", [
    pytest.param(1, 0, id="ws1-zero0"),
    pytest.param(2, 3, id="ws2-zero3"),
    pytest.param(1, 1, id="ws1-zero1", marks=pytest.mark.slow),
    pytest.param(1, 2, id="ws1-zero2", marks=pytest.mark.slow),
    pytest.param(2, 2, id="ws2-zero2", marks=pytest.mark.slow),
])
def test_deepspeed_update_equals_plain_torch(ray_local, tiny_model_path: Path, reference, world_size: int,
                                            stage: int) -> None:
    assert_update_equals_reference(tiny_model_path, reference, trainer_config(world_size, stage))


def test_gradient_checkpointing_gives_the_same_update(ray_local, tiny_model_path: Path, reference) -> None:
    cfg = trainer_config(1, 2).model_copy(update={"gradient_checkpointing": True})
    assert_update_equals_reference(tiny_model_path, reference, cfg)


def assert_update_equals_reference(tiny_model_path: Path, reference, cfg: TrainerConfig) -> None:
    from roll.trainer.group import TrainerGroup

    samples, ref_losses, ref_weights, initial = reference
    world_size, stage = cfg.world_size, cfg.zero_stage
    algo = AlgorithmConfig(name="ipa")
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=STEPS)
    try:
        assert [info["zero_stage"] for info in group.info] == [stage] * world_size
        update = prepare(samples, algo, cfg, pad_id=0)
        assert all(len(rank) == len(update.plan[0][0]) for rank in update.plan[0])  # same count on every rank
        attach(update, group.compute_logprobs(update.plan), "old_logp")
        losses = [run_update(group, update, algo)["loss"] for _ in range(STEPS)]
        weights = group.state_dict()
    finally:
        group.shutdown()
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-6)
    assert sorted(weights) == sorted(ref_weights)  # Hugging Face names, every parameter gathered
    for name, value in ref_weights.items():
        # Adam turns rounding noise on near-zero gradients into steps of up to lr: compare the updates, not bits.
        step_ref, step = value - initial[name], weights[name] - initial[name]
        assert float((step - step_ref).norm()) <= 1e-3 * float(step_ref.norm()) + 1e-7, name
        assert float((step - step_ref).abs().max()) < 0.05 * LR, name


ALGORITHM_CASES = {
    "ipa": {},
    "grpo": {},
    "gspo": {},
    "ppo": {},
    "reinforce": {"baseline": "rloo"},
}


def test_every_algorithm_trains_one_step(ray_local, tiny_model_path: Path) -> None:
    from transformers import AutoConfig

    from roll.trainer.group import TrainerGroup

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size, n=8, seed=1)
    cfg = trainer_config(1, 2)
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=len(ALGORITHM_CASES))
    try:
        before = group.state_dict()["lm_head.weight"].clone()
        for name, params in ALGORITHM_CASES.items():
            algo = AlgorithmConfig(name=name, params=params)
            update = prepare(samples, algo, cfg, pad_id=0)
            attach(update, group.compute_logprobs(update.plan), "old_logp")
            metrics = run_update(group, update, algo)
            assert torch.isfinite(torch.tensor(metrics["loss"])), name
            assert metrics["grad_norm"] > 0, name
            assert metrics["optimizer_steps"] == 1
        after = group.state_dict()["lm_head.weight"]
    finally:
        group.shutdown()
    assert not torch.equal(before, after)


def test_unknown_loss_parameter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="gamma"):
        loss_params(AlgorithmConfig(name="grpo", params={"gamma": 0.9}))
    with pytest.raises(ValueError, match="computed by the trainer"):
        loss_params(AlgorithmConfig(name="ipa", params={"global_denominator": 3}))


def test_reference_model_feeds_the_kl_term(ray_local, tiny_model_path: Path) -> None:
    """The frozen reference starts equal to the policy (KL 0); after an update the k3 KL to it is positive."""
    from transformers import AutoConfig

    from roll.trainer.group import TrainerGroup
    from roll.trainer.reference import ReferenceModel

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size, n=6, seed=2)
    cfg = trainer_config(1, 2)
    algo = AlgorithmConfig(name="ipa", kl_coef=0.1)
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=2)
    reference = ReferenceModel(str(tiny_model_path))
    try:
        kls = []
        for _ in range(2):
            update = prepare(samples, algo, cfg, pad_id=0)
            attach(update, group.compute_logprobs(update.plan), "old_logp")
            attach(update, reference.compute_logprobs(update.plan), "ref_logp")
            kls.append(run_update(group, update, algo)["kl"])
    finally:
        group.shutdown()
        reference.shutdown()
    assert kls[0] == pytest.approx(0.0, abs=1e-7) and kls[1] > 1e-6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU build of torch")
def test_gpu_trainer_config_on_cpu_torch_is_a_clear_error(tiny_model_path: Path) -> None:
    from roll.trainer.actor import TrainerActor

    actor = TrainerActor(str(tiny_model_path), TrainerConfig(num_gpus_per_actor=1).model_dump(), 0, 1)
    with pytest.raises(RuntimeError, match="has no CUDA: install a CUDA build of torch, or use the CPU trainer"):
        actor.setup("127.0.0.1", 1)  # fails before joining any process group
    assert actor.engine is None


def test_deepspeed_runtime_problems_name_their_fix() -> None:
    import importlib.util

    from roll.trainer.ds_config import runtime_problem

    def problem(cfg: TrainerConfig, cuda: bool = False, accelerate: bool = True, accelerator: str | None = None):
        return runtime_problem(cfg, cuda_available=cuda, accelerate_installed=accelerate, ds_accelerator=accelerator)

    zero3 = TrainerConfig(zero_stage=3)
    assert "pip install accelerate" in problem(zero3, accelerate=False)
    assert problem(zero3, accelerate=importlib.util.find_spec("accelerate") is not None) is None  # this machine
    gpu = TrainerConfig(num_gpus_per_actor=1, backend="nccl")
    assert "unset DS_ACCELERATOR" in problem(gpu, cuda=True, accelerator="cpu")
    assert problem(gpu, cuda=True, accelerator=None) is None
    assert "has no CUDA" in problem(TrainerConfig(backend="nccl"))
    assert "DS_ACCELERATOR=cuda" in problem(TrainerConfig(), accelerator="cuda")
    assert problem(TrainerConfig(), accelerator="cpu") is None
