"""Path resolution in a container's root (here this process's own root stands for it): what the kernel would
open, whatever the spelling."""
import os

import pytest

from rock.telemetry.container_paths import fold, is_sensitive, resolve

ME = os.getpid()


@pytest.mark.parametrize("path,base,expected", [
    ("./shadow", "/etc", "/etc/shadow"),
    ("../../etc/shadow", "/usr/bin", "/etc/shadow"),
    ("/etc//shadow", None, "/etc/shadow"),
    ("/etc/./shadow", None, "/etc/shadow"),
    ("/usr/lib/../../etc/shadow", None, "/etc/shadow"),
    ("/proc/self/root/etc/shadow", None, "/etc/shadow"),
    ("/proc/123/root/root/.ssh/id_rsa", None, "/root/.ssh/id_rsa"),
    ("/proc/self/cwd/shadow", "/etc", "/etc/shadow"),
])
def test_spellings(path, base, expected):
    assert resolve(path, ME, base) == expected


def test_symlinks_are_followed_inside_the_root(tmp_path):
    (tmp_path / "e").symlink_to("/etc")
    (tmp_path / "notes").symlink_to("e/shadow")
    (tmp_path / "loop").symlink_to("loop")
    assert resolve(str(tmp_path / "e" / "shadow"), ME, None) == "/etc/shadow"
    assert resolve("notes", ME, str(tmp_path)) == "/etc/shadow"
    assert resolve(str(tmp_path / "loop"), ME, None).startswith(str(tmp_path))  # bounded, no hang
    assert resolve(str(tmp_path / "e" / "shadow"), None, None) == fold(str(tmp_path / "e" / "shadow"))


@pytest.mark.parametrize("path", ["/etc/shadow", "/home/agent/.ssh/id_ed25519", "/root/x", "/home/a/.aws/config",
                                  "/home/a/.netrc", "/home/a/.git-credentials", "/proc/12/environ",
                                  "/run/docker.sock", "/home/a/.docker/config.json"])
def test_sensitive(path):
    assert is_sensitive(path)


@pytest.mark.parametrize("path", ["/etc/hostname", "/workspace/netrc.py", "/home/a/.sshrc", "/proc/12/stat",
                                  "/tmp/a.sock"])
def test_not_sensitive(path):
    assert not is_sensitive(path)
