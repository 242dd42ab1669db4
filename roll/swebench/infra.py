"""Advisory classification of failed runs: did the environment break, or might the patch be at fault? (The official
harness's signatures and tiers; a flagged instance still counts as unresolved or errored.)"""
from __future__ import annotations

import re
from pathlib import Path

TIER_ENVIRONMENT = "environment"
TIER_AMBIGUOUS = "ambiguous"

SIGNATURES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (reason, tier, re.compile(pattern, re.MULTILINE)) for reason, tier, pattern in (
        ("browser_launch_failed", TIER_ENVIRONMENT, r"Failed to launch|Failed to connect to the bus"),
        ("display_unavailable", TIER_ENVIRONMENT, r"cannot open display|Missing X server|unable to open X display"),
        ("out_of_memory", TIER_ENVIRONMENT, r"Cannot allocate memory|OutOfMemoryError|^Killed$"),
        ("container_unavailable", TIER_ENVIRONMENT, r"Error response from daemon|Cannot connect to the Docker daemon"),
        ("network_unreachable", TIER_ENVIRONMENT, r"Could not resolve host|Temporary failure in name resolution"),
        ("missing_module", TIER_AMBIGUOUS, r"Cannot find module|MODULE_NOT_FOUND|ModuleNotFoundError"),
        ("no_tests_collected", TIER_AMBIGUOUS, r"no tests ran|collected 0 items"),
        ("tests_timed_out", TIER_AMBIGUOUS, r"Timeout error: \d+ seconds exceeded"),
    )
)


def classify_text(text: str) -> tuple[str, str] | None:
    """(reason, tier) of the first matching signature, or None."""
    if not text:
        return None
    for reason, tier, pattern in SIGNATURES:
        if pattern.search(text):
            return reason, tier
    return None


def classify_files(*paths: str | Path) -> tuple[str, str] | None:
    texts = [Path(p).read_text(errors="replace") for p in paths if Path(p).is_file()]
    return classify_text("\n".join(texts))
