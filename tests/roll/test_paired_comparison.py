"""The main job's verdict on RL against its SFT start: per-instance flips and the exact sign-test p-value."""
from __future__ import annotations

import pytest

from roll.evaluate import paired_comparison


def test_a_one_sided_split_of_many_flips_is_beyond_noise() -> None:
    before = {f"t{i}": 0.0 if i < 18 else 1.0 for i in range(64)}
    after = {f"t{i}": 1.0 for i in range(64)}
    result = paired_comparison(before, after)
    assert (result.fixed, result.broken) == (18, 0)
    assert result.p_value == pytest.approx(2 / 2 ** 18)
    assert result.line().startswith("RL beats the SFT start: 18 instances fixed, 0 broken")


def test_a_small_net_gain_is_within_noise() -> None:
    before = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0, "f": 1.0, "g": 1.0, "h": 1.0}
    after = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 1.0, "f": 0.0, "g": 0.0, "h": 1.0}
    result = paired_comparison(before, after)
    assert (result.fixed, result.broken) == (5, 2)
    assert result.p_value == pytest.approx(2 * (1 + 7 + 21) / 128)  # P(X <= 2 | n = 7), both tails
    assert "within noise" in result.line() and "ahead" in result.line()


def test_only_shared_instances_count_and_no_flips_is_a_tie() -> None:
    result = paired_comparison({"a": 1.0, "b": 0.0}, {"a": 1.0, "c": 1.0})
    assert (result.fixed, result.broken, result.p_value) == (0, 0, 1.0)
    assert result.line().startswith("RL ties")
    worse = paired_comparison({f"t{i}": 1.0 for i in range(10)}, {f"t{i}": 0.0 for i in range(10)})
    assert worse.broken == 10 and worse.line().startswith("RL is worse than the SFT start")
