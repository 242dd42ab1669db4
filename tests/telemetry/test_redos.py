"""ReDoS regression guard: every default rule over a 100 KB command finishes fast (RE2 is linear; the old Python
patterns for env-secret-grep and interpreter-socket-shell took 8.5 s on 5.5 KB)."""
import time

import pytest

from rock.telemetry import load_rules
from rock.telemetry.command_text import command_observations
from rock.telemetry.detectors import apply_rules
from rock.telemetry.rules import Rule

HOSTILE = {
    "env-secret-grep": "env " * 12_500 + "| grep " * 7_200,  # Python's re: 1.3 s at 2 KB, cubic
    "interpreter-socket-shell": "socket " * 15_000 + "x",  # quadratic
    "many-segments": "a; " * 34_000,
    "quotes": "'" + "x " * 50_000,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_default_rule_is_fast_on_a_100kb_command(name):
    rules = load_rules()
    command = HOSTILE[name][:100_000]
    assert len(command) >= 90_000
    began = time.perf_counter()
    for obs in command_observations(command, "rock-x", 1.0):
        apply_rules(rules, obs)
    assert time.perf_counter() - began < 1.0


def test_rules_needing_backtracking_features_are_refused_at_load():
    with pytest.raises(ValueError, match="RE2"):
        Rule(id="x", category="network.egress", kind="exec", argv=r"(a)\1")
    with pytest.raises(ValueError, match="RE2"):
        Rule(id="x", category="network.egress", kind="exec", argv=r"foo(?!bar)")
