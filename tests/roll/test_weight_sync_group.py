"""The weight-sync group on its own: bucket plans cut only between layers, and a bucketed broadcast over a real gloo
group on 127.0.0.1 (two members in threads) delivers every tensor bit for bit, mixed dtypes included."""
from __future__ import annotations

import threading

import pytest
import torch

from roll.engines.weight_sync import (TensorSpec, broadcast_bucket, join_group, layer_of, open_store, plan_buckets,
                                      send_buckets)


def specs() -> list[TensorSpec]:
    out = [TensorSpec("model.embed_tokens.weight", (64, 16), "float32")]
    for layer in range(3):
        for part, shape in (("self_attn.q_proj.weight", (16, 16)), ("self_attn.k_proj.weight", (8, 16)),
                            ("self_attn.v_proj.weight", (8, 16)), ("mlp.up_proj.weight", (32, 16))):
            out.append(TensorSpec(f"model.layers.{layer}.{part}", shape, "float32"))
        out.append(TensorSpec(f"model.layers.{layer}.input_layernorm.weight", (16,), "bfloat16"))
    out.append(TensorSpec("lm_head.weight", (64, 16), "float32"))
    return out


def test_buckets_cover_every_parameter_once_and_end_between_layers() -> None:
    plan = plan_buckets(specs(), bucket_bytes=1500)
    assert [s for bucket in plan for s in bucket] == specs()
    assert len(plan) > 3
    for bucket, following in zip(plan, plan[1:]):  # a layer's projections are loaded (fused) together
        assert layer_of(bucket[-1].name) != layer_of(following[0].name)
    assert len(plan_buckets(specs(), bucket_bytes=1 << 30)) == 1


def test_bucketed_broadcast_over_gloo_on_loopback_is_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = {s.name: torch.randn(s.shape, generator=generator).to(getattr(torch, s.dtype)) for s in specs()}
    plan = plan_buckets(specs(), bucket_bytes=1500)
    store, port = open_store("127.0.0.1", timeout_s=60)
    received: list[tuple[str, torch.Tensor]] = []
    errors: list[BaseException] = []

    def receiver() -> None:
        try:
            group = join_group("127.0.0.1", port, 1, 2, "gloo", timeout_s=60)
            for bucket in plan:
                received.extend((name, t.clone()) for name, t in broadcast_bucket(group, bucket, None, "cpu"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    sender = join_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60, store=store)
    sent = send_buckets(sender, plan, iter(weights.items()), "cpu")
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert sent == sum(t.numel() * t.element_size() for t in weights.values())
    assert [name for name, _ in received] == list(weights)
    for name, tensor in received:
        assert tensor.dtype == weights[name].dtype and torch.equal(tensor, weights[name]), name


def test_weights_out_of_plan_are_refused_before_sending() -> None:
    plan = plan_buckets(specs(), bucket_bytes=1 << 30)
    shuffled = [(s.name, torch.zeros(s.shape)) for s in reversed(specs())]
    with pytest.raises(ValueError, match="weights out of plan"):
        send_buckets(None, plan, iter(shuffled), "cpu")
