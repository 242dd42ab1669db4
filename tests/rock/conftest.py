import pytest

from rock import DEFAULT_IMAGE, Sandbox, SandboxConfig
from rock.engine import client


@pytest.fixture(scope="session")
def docker_engine():
    """The real engine and the default image; setup (scripts/setup.sh) provides both."""
    engine = client()
    engine.images.get(DEFAULT_IMAGE)
    return engine


@pytest.fixture
def sandbox(docker_engine):
    with Sandbox(SandboxConfig(command_timeout=30)) as sb:
        yield sb
