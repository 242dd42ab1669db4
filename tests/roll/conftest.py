"""Fixtures of tests/roll: `agent_image`, the rock-agent image (docker/agent/: the default image + the iflow CLI from
local wheels), which scripts/setup.sh builds."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def agent_image(sandbox_image: str) -> str:
    from rock.agent_image import AGENT_IMAGE
    from rock.engine import client

    client().images.get(AGENT_IMAGE)
    return AGENT_IMAGE
