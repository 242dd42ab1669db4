import pytest
from pydantic import ValidationError

from rock import SandboxConfig


def test_defaults_are_hardened():
    cfg = SandboxConfig()
    assert cfg.network_mode == "none"
    assert cfg.user != "root" and cfg.cap_add == [] and cfg.privileged is False


@pytest.mark.parametrize("field,value", [("memory", "lots"), ("cpus", 0), ("pids_limit", 1), ("workdir", "rel/dir"),
                                         ("privileged", True), ("network_mode", "bad mode!")])
def test_bad_value_names_the_field(field, value):
    with pytest.raises(ValidationError) as info:
        SandboxConfig(**{field: value})
    assert field in str(info.value)


def test_unknown_key_is_rejected():
    with pytest.raises(ValidationError, match="memroy"):
        SandboxConfig(memroy="1g")


def test_memory_bytes():
    assert SandboxConfig(memory="512m").memory_bytes() == 512 * 1024**2
