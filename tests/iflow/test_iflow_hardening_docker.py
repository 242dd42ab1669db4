"""Attacks on the tools in a real ROCK sandbox (no network): option injection, file tools used as root through
symlinks, huge sparse files, and the capped host-side transfers."""
from __future__ import annotations

import asyncio
import hashlib
import resource
import time
from pathlib import Path

import pytest
from test_iflow_hardening_local import OPTION_ATTACKS, SPARSE_SIZE

from iflow.backends import FileTooLarge, RockBackend
from iflow.backends.session_files import WRITE_CHUNK_BYTES
from iflow.tools import ToolContext, ToolRegistry
from iflow.trajectory import ToolCall

pytestmark = pytest.mark.docker

REGISTRY = ToolRegistry.from_names()
WORKSPACE_FILES = ["README", "src/keep.py"]


@pytest.fixture(scope="module")
async def sandbox(docker_sandbox_ready):
    from rock import AsyncSandbox, SandboxConfig

    async with AsyncSandbox(SandboxConfig(command_timeout=60)) as started:
        yield started


@pytest.fixture
async def backend(sandbox) -> RockBackend:
    """The sandbox's workspace reset to a committed git repository with a few files."""
    backend = RockBackend(sandbox)
    setup = await backend.run("cd /workspace && rm -rf -- ..?* .[!.]* * && mkdir src && echo important > README && "
                              "echo \"print('keep')\" > src/keep.py && git init -q && git add . && "
                              "git -c user.name=t -c user.email=t@t commit -qm init && echo ok", timeout=60)
    assert setup.output.strip().endswith("ok"), setup.output
    return backend


async def call(backend: RockBackend, name: str, **arguments):
    return await REGISTRY.execute(ToolCall(name=name, arguments=arguments), ToolContext(backend, 60))


async def root_exec(sandbox, command: str) -> str:
    code, output = await sandbox.exec(["sh", "-c", command], user="root")
    assert code == 0, output
    return output


@pytest.mark.parametrize(("name", "arguments"), OPTION_ATTACKS, ids=[f"{n}-{i}" for i, (n, _) in
                                                                      enumerate(OPTION_ATTACKS)])
async def test_option_like_arguments_delete_nothing_in_a_sandbox(backend, name: str, arguments: dict):
    await call(backend, name, **arguments)
    listing = await backend.run("cd /workspace && ls README src/keep.py", timeout=30)
    assert listing.exit_code == 0, f"{name} {arguments} deleted files: {listing.output}"


async def test_symlink_to_etc_gives_no_root_reads(backend, sandbox):
    await backend.run("ln -s /etc /workspace/e", timeout=30)
    shadow = await call(backend, "view", path="e/shadow")
    assert shadow.is_error and "permission denied" in shadow.output.lower()
    assert "root:" not in shadow.output
    readable = await call(backend, "view", path="e/hostname")  # what the sandbox user may read, it may view
    assert not readable.is_error


async def test_symlink_to_etc_gives_no_root_writes(backend, sandbox):
    passwd_before = await root_exec(sandbox, "sha256sum /etc/passwd")
    await backend.run("ln -s /etc /workspace/e && ln -s /usr/local/bin /workspace/b", timeout=30)
    created = await call(backend, "create", path="e/passwd", file_text="agent::0:0::/:/bin/sh\n")
    replaced = await call(backend, "str_replace", path="e/passwd", old_str="root:x:0:0",
                          new_str="root::0:0")
    inserted = await call(backend, "insert", path="e/passwd", insert_line=0, new_str="agent::0:0::/:/bin/sh")
    planted = await call(backend, "create", path="b/evil", file_text="#!/bin/sh\nid\n")
    assert created.is_error and "already exists" in created.output
    assert replaced.is_error and "permission denied" in replaced.output.lower()
    assert inserted.is_error and "permission denied" in inserted.output.lower()
    assert planted.is_error and "permission denied" in planted.output.lower()
    assert await root_exec(sandbox, "sha256sum /etc/passwd") == passwd_before
    assert await root_exec(sandbox, "ls -A /usr/local/bin; ls -A /tmp | grep -c iflow-write || true") == "0\n"


async def test_session_file_io_round_trips_bytes_and_keeps_the_mode(backend, sandbox):
    payload = bytes(range(256)) * (3 * WRITE_CHUNK_BYTES // 256 + 7)  # several chunks, every byte value
    await backend.write_file("data/blob.bin", payload)
    assert await backend.read_file("data/blob.bin") == payload
    owner = await root_exec(sandbox, "stat -c '%U %a' /workspace/data/blob.bin")
    assert owner.split()[0] == "agent"
    await backend.run("printf '#!/bin/sh\\necho one\\n' > /workspace/run.sh && chmod 755 /workspace/run.sh",
                      timeout=30)
    edited = await call(backend, "str_replace", path="run.sh", old_str="one", new_str="two")
    assert not edited.is_error
    ran = await backend.run("/workspace/run.sh; stat -c %a /workspace/run.sh", timeout=30)
    assert ran.output.split() == ["two", "755"]
    with pytest.raises(FileTooLarge):
        await backend.read_file("data/blob.bin", limit=len(payload) - 1)
    await backend.run("mkfifo /workspace/pipe", timeout=30)
    for special in ("pipe", "data", "/proc/self/fd/0", "missing"):
        with pytest.raises(OSError):
            await asyncio.wait_for(backend.read_file(special), 20)


async def test_sparse_50g_file_is_refused_before_reading_in_a_sandbox(backend, sandbox):
    await backend.run(f"truncate -s {SPARSE_SIZE} /workspace/big.bin", timeout=30)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    viewed = await call(backend, "view", path="big.bin")
    submitted = await call(backend, "submit")
    with pytest.raises(FileTooLarge):  # the host-side (archive API) read is capped too, from the tar header
        await sandbox.read_file("/workspace/big.bin")
    elapsed = time.monotonic() - started
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert viewed.is_error and "too large" in viewed.output and str(SPARSE_SIZE) in viewed.output
    assert submitted.is_error and not submitted.ends_episode and "big.bin" in submitted.output
    assert rss_growth_kib < 64 * 1024 and elapsed < 30


async def test_host_download_is_capped_while_streaming(backend, sandbox, tmp_path: Path):
    from rock.transfer import extract_to

    await backend.run("head -c 3000000 /dev/zero > /workspace/three_mb.bin", timeout=30)
    chunks, _ = sandbox.sync.container.get_archive("/workspace/three_mb.bin")
    with pytest.raises(FileTooLarge):
        extract_to(chunks, "/workspace/three_mb.bin", tmp_path / "out.bin", limit=1024 * 1024)
    assert not (tmp_path / "out.bin").exists()
    await sandbox.download("/workspace/three_mb.bin", tmp_path / "ok.bin")  # under the default cap: works
    assert hashlib.sha256((tmp_path / "ok.bin").read_bytes()).hexdigest() == hashlib.sha256(
        b"\0" * 3000000).hexdigest()
