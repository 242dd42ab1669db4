"""SFT: error masking (Eq. 1-2) keeps failed tool calls out of the loss; training on the DeepSpeed trainer produces a
Hugging Face checkpoint that loads and has learned the data; `roll sft` on scripted-expert data end to end."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from iflow.trajectory import Trajectory, Turn, save_jsonl
from roll.config.training import MetricsConfig, SFTConfig, TrainerConfig
from roll.sft import batches, masked_fraction, sft_samples


def golden(n: int, vocab: int, seed: int = 0, failed_turn: int | None = 1) -> list[Trajectory]:
    """Three-turn episodes whose completions follow a fixed pattern (learnable); turn `failed_turn` is a failed
    tool call (train_mask=0) whose tokens are noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt, turns = [rng.randrange(10, vocab) for _ in range(6)], []
        for k in range(3):
            failed = k == failed_turn
            completion = [rng.randrange(10, vocab) for _ in range(5)] if failed else [100 + k, 200 + k, 300 + k, 7]
            turns.append(Turn(index=k, prompt_ids=list(prompt), completion_ids=completion,
                              logprobs=[0.0] * len(completion), train_mask=0 if failed else 1, tool_error=failed))
            prompt = prompt + completion + [rng.randrange(10, vocab) for _ in range(3)]
        out.append(Trajectory(id=f"t{i}", task_id=f"task{i}", turns=turns, reward=1.0))
    return out


def test_error_masking_drops_failed_turns() -> None:
    trajectories = golden(4, vocab=500)
    masked = sft_samples(trajectories, SFTConfig(error_masking=True), None)
    plain = sft_samples(trajectories, SFTConfig(error_masking=False), None)
    assert [s.num_loss_tokens for s in masked] == [8] * 4  # two good turns of 4 tokens
    assert [s.num_loss_tokens for s in plain] == [13] * 4  # ... plus the failed turn's 5
    assert masked_fraction(masked) == pytest.approx(5 / 13)
    all_failed = Trajectory(id="x", turns=[Turn(index=0, prompt_ids=[1, 2], completion_ids=[3], logprobs=[0.0],
                                                train_mask=0)])
    with pytest.raises(ValueError, match="no trainable tokens"):
        sft_samples([all_failed], SFTConfig(error_masking=True), None)


def test_batches_cover_every_sample_each_epoch_reproducibly() -> None:
    schedule = batches(10, 4, epochs=2, seed=3)
    assert [len(b) for b in schedule] == [4, 4, 2, 4, 4, 2]
    assert sorted(i for b in schedule[:3] for i in b) == list(range(10))
    assert schedule == batches(10, 4, epochs=2, seed=3) and schedule[:3] != schedule[3:]


def test_sft_trains_and_writes_a_loadable_checkpoint(ray_local, tiny_model_path: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from roll.metrics import read_jsonl
    from roll.sft import run_sft

    vocab = AutoConfig.from_pretrained(tiny_model_path).vocab_size
    data = golden(16, vocab)
    output = run_sft(model_path=tiny_model_path, trajectories=data,
                     sft=SFTConfig(epochs=6, batch_size=8, lr=3e-3), trainer=TrainerConfig(zero_stage=1),
                     metrics=MetricsConfig(wandb="disabled", progress_bar=False), run_dir=tmp_path, pad_id=0)
    rows = read_jsonl(tmp_path / "sft_metrics.jsonl")
    assert len(rows) == 12 and all(r["loss_tokens"] == 64 for r in rows)  # 8 sequences x 8 unmasked tokens
    assert rows[-1]["nll"] < 0.5 * rows[0]["nll"]
    model = AutoModelForCausalLM.from_pretrained(output)
    assert AutoTokenizer.from_pretrained(output).chat_template  # the tokenizer travels with the weights
    turn = data[0].turns[2]
    ids = torch.tensor([turn.prompt_ids + turn.completion_ids])
    with torch.no_grad():
        predicted = model(ids).logits[0, len(turn.prompt_ids) - 1: -1].argmax(-1).tolist()
    assert predicted == turn.completion_ids  # the pattern of the good turns was learned


@pytest.mark.docker
@pytest.mark.slow
def test_roll_sft_on_scripted_expert_data(tmp_path: Path) -> None:
    import subprocess
    import sys

    roll = str(Path(sys.executable).parent / "roll")
    result = subprocess.run([roll, "sft", f"run.dir={tmp_path}", "sft.expert_episodes=4", "sft.epochs=1",
                             "sft.batch_size=4", "metrics.wandb=disabled", "metrics.progress_bar=false"],
                            check=False, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip().splitlines()[-1]) == tmp_path / "sft_model"
    assert (tmp_path / "sft_model" / "model.safetensors").is_file()
    lines = (tmp_path / "golden.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_save_jsonl_roundtrip_feeds_sft(tmp_path: Path) -> None:
    from roll.sft import load_trajectories

    path = tmp_path / "golden.jsonl"
    save_jsonl(golden(3, 500), path)
    assert [t.id for t in load_trajectories([path])] == ["t0", "t1", "t2"]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no trajectories"):
        load_trajectories([tmp_path / "empty.jsonl"])
