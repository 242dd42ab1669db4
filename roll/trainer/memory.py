"""The trainer process's resident-set high-water mark per update (Linux /proc; None elsewhere)."""
from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (writing 5 to clear_refs), so the next reading is this phase's peak."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / (1 << 20)  # kB -> GiB
    except OSError:
        pass
    return None
