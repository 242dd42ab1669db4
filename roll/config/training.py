"""Config sections of the training half: the DeepSpeed trainer, the RL algorithm, the RL loop, SFT, checkpoints,
metrics and evaluation. Pydantic models; the Hydra YAML under configs/trainer, configs/algorithm, ... fills them.

Every model forbids unknown keys so that a typo in a YAML file or an override fails loudly at start-up."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALGORITHM_NAMES = ("ipa", "grpo", "gspo", "ppo", "reinforce")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainerConfig(_Strict):
    """The DeepSpeed trainer actors: one per data-parallel rank, joined in one process group."""

    world_size: int = Field(1, ge=1, description="number of trainer actors (data-parallel ranks)")
    zero_stage: Literal[0, 1, 2, 3] = 2
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on GPUs, gloo on CPU")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    trainable_layers: int | None = Field(
        None, ge=1, description="train only the top N transformer blocks and the final norm (and an untied output "
                                "head); the embeddings and lower blocks stay frozen, and backward stops above them")
    offload_optimizer: bool = Field(False, description="ZeRO CPU optimizer offload (compiles cpu_adam on first use)")
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    eps: float = 1e-8
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    total_steps: int | None = Field(None, description="optimizer steps the schedule decays over (None: the run's)")
    max_grad_norm: float = Field(1.0, gt=0)
    max_tokens_per_microbatch: int = Field(8192, ge=1, description="padded tokens (rows x longest row) per micro-batch")
    max_seq_len: int | None = Field(None, ge=2, description="longer training sequences are cut (their tail dropped)")
    truncation: Literal["drop_sample", "keep", "zero_reward"] = Field(
        "drop_sample", description="RL sequences over max_seq_len: not trained on (drop_sample), head trained "
                                   "(keep), or head trained with reward 0 (zero_reward); counted in truncated_frac")
    mini_batches: int = Field(1, ge=1, description="optimizer updates per rollout batch (PPO-style mini-batches)")
    epochs: int = Field(1, ge=1, description="passes over each rollout batch")
    num_cpus_per_actor: float = Field(0.01, ge=0, description="Ray CPU resource per trainer actor")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="Ray GPU resource per trainer actor (1 on GPU machines)")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads per actor (None: torch's default)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TrainerConfig:
        if self.zero_stage == 0 and self.offload_optimizer:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        return self


class AlgorithmConfig(_Strict):
    """Which loss of `ipa` to train with and its keyword parameters (passed through to `ipa.compute_loss`)."""

    name: Literal["ipa", "grpo", "gspo", "ppo", "reinforce"] = "ipa"
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of ipa.compute_loss")
    recompute_old_logprobs: bool = Field(True, description="old log-probs from the trainer (else the engine's)")
    error_masking: bool = Field(False, description="drop turns with train_mask=0 (failed tool calls) from the loss")
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the reference model; > 0 starts a reference actor")
    filter_zero_variance_groups: bool = Field(
        False, description="drop groups whose rewards are all equal (no group-relative signal)")
    failure_reward: float | None = Field(
        None, description="reward a failed trajectory (verifier score <= 0) is trained with, e.g. -1 to push "
                          "failures down; the safety penalty still applies and the record keeps the verifier's "
                          "outcome (null: train with the recorded reward)")
    prefix_il_coef: float = Field(
        0.0, ge=0, description="Eq. 10's lambda_IL: with rollout.resampling, the replayed expert-prefix tokens also get "
                               "the SFT loss (token-mean over the mini-batch's prefix tokens); 0: they are context only")
    reward_baseline: Literal["none", "mean", "rloo"] = Field(
        "none", description="ipa only: subtract the group's mean training reward (rloo: the others' mean) from each "
                            "trajectory's before the loss, so below-average episodes take the TOPR branch and "
                            "all-equal groups give no gradient (grpo/gspo/ppo centre within groups themselves)")

    @model_validator(mode="after")
    def _check(self) -> AlgorithmConfig:
        if self.reward_baseline != "none" and self.name != "ipa":
            raise ValueError(f"algorithm.reward_baseline: {self.reward_baseline!r} is for ipa; {self.name} centres "
                             f"rewards itself (reinforce: algorithm.params.baseline)")
        return self


class LoopConfig(_Strict):
    """The RL loop of the driver."""

    steps: int = Field(2, ge=1, description="RL steps (rollout batch -> one update round -> weight push)")
    save_every: int = Field(1, ge=1, description="checkpoint every N steps (and always at the last step)")
    keep_checkpoints: int = Field(2, ge=1, description="older step checkpoints are deleted")
    save_trajectories: bool = True
    resume: str | None = Field(None, description="'latest' or a checkpoint directory to resume from")
    eval_at_end: bool = Field(True, description="evaluate the start and the final policy on held-out tasks")
    eval_start: bool = Field(True, description="with eval_at_end: evaluate the start too (false when another run "
                                               "from the same start already did, e.g. the arms of an experiment)")
    export_hf: bool = Field(True, description="write the final policy as a Hugging Face checkpoint")


class SFTConfig(_Strict):
    """Supervised warm start on golden trajectories (JSON lines), with the paper's error masking (Eq. 1-2)."""

    data: list[str] = Field(default_factory=list, description="JSON-lines trajectory files (empty: scripted expert)")
    expert_episodes: int = Field(64, ge=1, description="golden episodes the scripted expert writes when data is empty")
    shortcut_fraction: float = Field(0.0, ge=0, le=1, description="share of expert episodes played by the privileged "
                                                                  "expert that writes the word without reading it")
    error_masking: bool = Field(True, description="mask turns whose tool call failed (train_mask=0)")
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step")
    lr: float | None = Field(None, gt=0, description="overrides trainer.lr for SFT")
    output_dir: str | None = Field(None, description="where the HF checkpoint goes (default: <run_dir>/sft_model)")
    shuffle_seed: int = 0


class MetricsConfig(_Strict):
    """Where per-step metrics go. The JSON-lines file in the run directory is always written."""

    wandb: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str = "letitflow"
    wandb_entity: str | None = None
    tensorboard: bool = False
    progress_bar: bool = True


class EvalConfig(_Strict):
    """Held-out evaluation of a checkpoint on the task family."""

    num_tasks: int = Field(32, ge=1, description="held-out task instances")
    split: Literal["eval", "dev", "test"] | None = Field(
        None, description="null = the family's held-out split (secret_word: eval, relay: test); dev for tuning")
    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    seed: int = 1234
