"""File transfer in and out of a container as tar streams (extraction never trusts the sandbox's paths)."""
from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
import tempfile
import time
from pathlib import Path


def single_file_tar(name: str, data: bytes, mode: int, uid: int, gid: int) -> bytes:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return stream.getvalue()


def path_tar(local: Path, arcname: str, uid: int, gid: int) -> bytes:
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        tar.add(str(local), arcname=arcname, filter=owned)
    return stream.getvalue()


def read_single_member(chunks, path: str) -> bytes:
    """The bytes of the one regular file in a `get_archive` stream."""
    stream = io.BytesIO(b"".join(chunks))
    with tarfile.open(fileobj=stream, mode="r") as tar:
        member = tar.next()
        if member is None or not member.isfile():
            raise IsADirectoryError(f"{path} is not a regular file in the sandbox")
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def extract_to(chunks, remote: str, local: Path) -> None:
    """Extract a `get_archive` stream of `remote` so that it lands exactly at `local`."""
    stream = io.BytesIO(b"".join(chunks))
    local = Path(local)
    with tempfile.TemporaryDirectory(prefix="rock-dl-") as tmp:
        with tarfile.open(fileobj=stream, mode="r") as tar:
            tar.extractall(tmp, filter="data")
        extracted = Path(tmp) / posixpath.basename(remote.rstrip("/"))
        if local.exists() and local.is_dir() and extracted.is_dir():
            shutil.copytree(extracted, local, dirs_exist_ok=True)
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(extracted), str(local))
