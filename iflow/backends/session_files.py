"""File reads and writes for the agent's tools, done by the sandbox user through a shell session inside the
container, in bounded base64 chunks, never as root through dockerd's archive API.

Going through the session means the kernel checks every access with the sandbox user's permissions: a symlink to
/etc gives no way to read /etc/shadow or to rewrite /etc/passwd. Every read is stat-ed first and capped; each chunk
fits in the session's output cap, so no command's output is ever cut.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import posixpath
import secrets
import shlex
from collections.abc import Awaitable, Callable

from rock.records import CommandResult
from rock.transfer import FileTooLarge

RunInSession = Callable[[str], Awaitable[CommandResult]]
WRITE_CHUNK_BYTES = 48 * 1024  # raw bytes per write command (64 KiB of base64 on the command line)


def read_chunk_bytes(max_output_bytes: int) -> int:
    """Raw bytes per read command so that their base64 stays well inside the session's output cap."""
    return max(3, (max_output_bytes - 512) // 4 * 3)


def _failure(result: CommandResult, path: str, action: str) -> OSError:
    message = result.output.strip() or f"exit code {result.exit_code}"
    if result.timed_out:
        return TimeoutError(f"{action} {path} timed out")
    if "ermission denied" in message:
        return PermissionError(f"cannot {action} {path}: permission denied (as the sandbox user)")
    if "No such file" in message:
        return FileNotFoundError(f"{path} does not exist")
    if "Is a directory" in message:
        return IsADirectoryError(f"{path} is a directory")
    return OSError(f"cannot {action} {path}: {message}")


async def file_size(run: RunInSession, path: str) -> int:
    """The size of a regular file (symlinks followed), read as the sandbox user; OSError when it is not one."""
    quoted = shlex.quote(path)
    result = await run(f"if [ -f {quoted} ]; then stat -L -c %s -- {quoted}; elif [ -e {quoted} ]; "
                       f"then echo 'not a regular file' >&2; false; else stat -L -c %s -- {quoted}; fi")
    text = result.output.strip()
    if result.exit_code != 0 or not text.isdigit():
        if result.exit_code == 0:
            raise OSError(f"cannot stat {path}: {text!r}")
        raise _failure(result, path, "read")
    return int(text)


async def read_file(run: RunInSession, path: str, limit: int, max_output_bytes: int) -> bytes:
    """The file's bytes, read in chunks; FileTooLarge before reading anything when it has more than `limit`."""
    size = await file_size(run, path)
    if size > limit:
        raise FileTooLarge(path, size, limit)
    chunk = read_chunk_bytes(max_output_bytes)
    quoted, data = shlex.quote(path), bytearray()
    while True:
        want = min(chunk, limit + 1 - len(data))  # one byte past the cap tells that the file grew meanwhile
        # in a subshell, so that `exit` does not end the session
        result = await run(f"( dd if={quoted} bs={chunk} skip={len(data)} count={want} "
                           f"iflag=skip_bytes,count_bytes status=none | base64 -w0; exit ${{PIPESTATUS[0]}} )")
        if result.exit_code != 0 or result.truncated_bytes:
            raise _failure(result, path, "read")
        try:
            piece = base64.b64decode(result.output.strip(), validate=True)
        except binascii.Error as exc:
            raise OSError(f"reading {path}: garbled transfer ({exc})") from None
        data += piece
        if len(data) > limit:
            raise FileTooLarge(path, None, limit)
        if len(piece) < want:
            return bytes(data)


async def write_file(run: RunInSession, path: str, data: bytes, limit: int) -> None:
    """Write `data` to `path` (created with the user's umask, or overwritten in place, keeping its mode). The data
    is gzipped (the shell reads its input a byte at a time, so fewer bytes is what makes writes fast; source code
    shrinks 3-5x) and goes to a private temporary file first, so a failed transfer leaves the target as it was."""
    if len(data) > limit:
        raise FileTooLarge(path, len(data), limit)
    staging = shlex.quote(f"/tmp/.iflow-write-{secrets.token_hex(8)}.gz")
    quoted = shlex.quote(path)
    parent = shlex.quote(posixpath.dirname(path) or "/")
    made = await run(f"mkdir -p -- {parent} && ( umask 077 && set -o noclobber && : > {staging} )")
    if made.exit_code != 0:
        raise _failure(made, posixpath.dirname(path), "create the directory of")
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    try:
        for start in range(0, len(packed), WRITE_CHUNK_BYTES):
            encoded = base64.b64encode(packed[start:start + WRITE_CHUNK_BYTES]).decode()
            sent = await run(f"printf %s {encoded} | base64 -d >> {staging}")
            if sent.exit_code != 0:
                raise _failure(sent, path, "write")
        written = await run(f"gzip -t -- {staging} && gzip -dc -- {staging} > {quoted}")
        if written.exit_code != 0:
            raise _failure(written, path, "write")
    finally:
        await run(f"rm -f -- {staging}")
