"""File transfer in and out of a container as tar streams (extraction never trusts the sandbox's paths).

Reads from a container are streamed and capped: a `get_archive` stream is never joined in memory, a member whose
header announces more than the cap is refused before its data is read, and a download is spooled to disk only up
to its cap. (A sparse `truncate -s 50G` file would otherwise stream 50 GB into the host process.)"""
from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

READ_LIMIT_BYTES = 64 * 1024 * 1024       # one file read out of a sandbox by the host
DOWNLOAD_LIMIT_BYTES = 1024 * 1024 * 1024  # one download (a tar stream of a file or a directory)


class FileTooLarge(OSError):
    """A read or transfer would pass its byte cap; nothing past the cap was read."""

    def __init__(self, path: str, size: int | None, limit: int) -> None:
        self.path, self.size, self.limit = path, size, limit
        what = f"{size} bytes" if size is not None else "more bytes than that"
        super().__init__(f"{path} is too large to read: {what}, the limit is {limit} bytes")


class CappedChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks that fails once more than `limit` bytes arrive."""

    def __init__(self, chunks: Iterable[bytes], limit: int, path: str) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""
        self.limit, self.path, self.consumed = limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._pending))
        if self.consumed + size > self.limit:
            raise FileTooLarge(self.path, None, self.limit)
        target[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.consumed += size
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)  # a generator over an HTTP response: stop it
        if close is not None:
            close()
        super().close()


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


def read_single_member(chunks: Iterable[bytes], path: str, limit: int = READ_LIMIT_BYTES) -> bytes:
    """The bytes of the one regular file in a `get_archive` stream; FileTooLarge when its header says it has more
    than `limit` bytes (checked before any of its data is read)."""
    # room for the tar headers (a long name takes extra blocks) on top of the data
    with CappedChunkStream(chunks, limit + 64 * 1024, path) as raw, \
            tarfile.open(fileobj=io.BufferedReader(raw), mode="r|") as tar:
        member = tar.next()
        if member is None or not member.isfile():
            raise IsADirectoryError(f"{path} is not a regular file in the sandbox")
        if member.size > limit:
            raise FileTooLarge(path, member.size, limit)
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def extract_to(chunks: Iterable[bytes], remote: str, local: Path, limit: int = DOWNLOAD_LIMIT_BYTES) -> None:
    """Extract a `get_archive` stream of `remote` so that it lands exactly at `local`. The stream is spooled to a
    temporary file, at most `limit` bytes of it (FileTooLarge beyond)."""
    local = Path(local)
    with tempfile.TemporaryDirectory(prefix="rock-dl-") as tmp:
        spool = Path(tmp) / "stream.tar"
        with CappedChunkStream(chunks, limit, remote) as raw, spool.open("wb") as out:
            shutil.copyfileobj(raw, out, 1024 * 1024)
        target = Path(tmp) / "out"
        with tarfile.open(spool, mode="r") as tar:
            tar.extractall(target, filter="data")
        extracted = target / posixpath.basename(remote.rstrip("/"))
        if local.exists() and local.is_dir() and extracted.is_dir():
            shutil.copytree(extracted, local, dirs_exist_ok=True)
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(extracted), str(local))
