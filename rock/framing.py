"""The session shell's framing protocol, with no I/O: how a command is written to a long-lived bash and how the end
marker after it (a per-command nonce, the exit status, the working directory) is recognised in its output.

Each command is sent ANSI-C quoted and `eval`-ed inside RUNNER (so `cd` and `export` persist and a syntax error
cannot wedge the framing), with stdin from /dev/null. Used by rock.session (over `docker exec`) and reusable by any
other backend that keeps one bash open (e.g. a local shell)."""
from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from rock.output import CappedBuffer

# The session shell runs each command inside this function. On timeout the shell gets SIGUSR1: its trap returns
# from the function as soon as the current foreground process is gone, so the rest of the command never runs.
# Commands write stderr into the stream (`2>&1` on the eval); the shell's own stderr is /dev/null, because bash
# prints its "Killed ..." notices about background jobs of an earlier command whenever it gets to them, which may be
# between two commands; `jobs` swallows those still pending when a command starts.
# Outside the function SIGUSR1 is ignored, not fatal: the killer's signal may land just after the command ended.
RUNNER = ("trap '' USR1; "
          "__rock_run() { jobs >/dev/null 2>&1; trap 'trap \"\" USR1; return 124' USR1; eval \"$1\" </dev/null 2>&1; "
          "local __rock_rc=$?; trap '' USR1; return $__rock_rc; }")
MARKER_WINDOW = 4200  # bytes after the marker's prefix: a status and a working directory up to PATH_MAX


def ansi_c_quote(text: str) -> str:
    """Quote as bash $'...': printable ASCII as is, every other byte as \\xHH, so no byte can break the framing."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in "\\'" else f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def new_nonce() -> str:
    return secrets.token_hex(8)


def marker_prefix(nonce: str, prefix: str = "ROCK") -> bytes:
    return f"\n__{prefix}_{nonce}__ ".encode()


def _printf_marker(nonce: str, prefix: str, fields: str, values: str) -> str:
    return f"printf '\\n__{prefix}_{nonce}__ {fields}\\n' {values}"


def handshake_line(nonce: str, prefix: str = "ROCK") -> bytes:
    """Set the shell up (no prompts, no history, its own stderr silenced, RUNNER defined). The marker's status
    field is `$$`: the shell's pid as its own pid namespace sees it."""
    return (f"exec 2>/dev/null; unset HISTFILE; PS1=; PS2=; {RUNNER}; "
            f"{_printf_marker(nonce, prefix, '%s', '$$')}\n").encode()


def command_line(command: str, nonce: str, env: dict[str, str] | None = None, prefix: str = "ROCK") -> bytes:
    """One command, run by RUNNER, then its marker: `<status> <cwd>`. `env` is exported first (e.g. the command
    tag), so the variables are in the environment of everything the command starts."""
    exports = "".join(f"export {name}={ansi_c_quote(value)}; " for name, value in (env or {}).items())
    return (f"{exports}__rock_run {ansi_c_quote(command)}; "
            + _printf_marker(nonce, prefix, "%d %s", '$? "$PWD"') + "\n").encode()


def ping_line(nonce: str, prefix: str = "ROCK") -> bytes:
    """An empty round trip: its marker (status 0, cwd) arrives once everything written before it has been read."""
    return (_printf_marker(nonce, prefix, "0 %s", '"$PWD"') + "\n").encode()


@dataclass(frozen=True)
class Marker:
    status: int
    rest: str  # the working directory (empty for the handshake, whose status is the shell's pid)
    length: int  # bytes from the marker's start to the end of its line, i.e. what to cut from the stream


def parse_marker(tail: bytes, prefix_bytes: bytes) -> Marker | None:
    """Find the last complete marker line in `tail` (the end of the stream). None while it has not fully arrived."""
    index = tail.rfind(prefix_bytes)
    if index < 0:
        return None
    end = tail.find(b"\n", index + len(prefix_bytes))
    if end < 0:
        return None
    fields = tail[index + len(prefix_bytes): end].decode("utf-8", "replace").split(" ", 1)
    try:
        status = int(fields[0])
    except ValueError:
        return None
    return Marker(status, fields[1] if len(fields) > 1 else "", len(tail) - index)


def take_marker(buffer: CappedBuffer, prefix_bytes: bytes) -> Marker | None:
    """parse_marker on the buffer's tail; when found, the marker (and anything after it) is removed from the
    buffer, so `buffer.render()` is the command's output alone."""
    marker = parse_marker(buffer.endswith_window(len(prefix_bytes) + MARKER_WINDOW), prefix_bytes)
    if marker is not None:
        buffer.drop_tail(marker.length)
    return marker


def demux(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """Split Docker's multiplexed attach stream (per frame: 1 byte stream, 3 zero bytes, 4 bytes big-endian size,
    payload) into payloads. Returns (complete payloads, the bytes of an incomplete frame to prepend next time)."""
    data = pending + chunk
    payloads, offset = [], 0
    while len(data) - offset >= 8:
        size = struct.unpack(">I", data[offset + 4: offset + 8])[0]
        if len(data) - offset - 8 < size:
            break
        payloads.append(data[offset + 8: offset + 8 + size])
        offset += 8 + size
    return payloads, data[offset:]
