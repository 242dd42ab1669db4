"""The framing protocol against a real local bash (no container needed)."""
import subprocess
import time

from rock.framing import (ansi_c_quote, command_line, handshake_line, marker_prefix, new_nonce, parse_marker,
                          ping_line, take_marker)
from rock.output import CappedBuffer


def _read_marker(proc: subprocess.Popen, nonce: str, timeout: float = 10.0) -> tuple[str, int, str]:
    buffer, prefix = CappedBuffer(1 << 20), marker_prefix(nonce)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marker = take_marker(buffer, prefix)
        if marker is not None:
            return buffer.render()[0], marker.status, marker.rest
        chunk = proc.stdout.read1(65536)
        assert chunk, "bash exited"
        buffer.feed(chunk)
    raise AssertionError("no marker")


def test_commands_round_trip_through_a_real_bash(tmp_path):
    proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        def send(line: bytes) -> None:
            proc.stdin.write(line)
            proc.stdin.flush()

        nonce = new_nonce()
        send(handshake_line(nonce))
        _, shell_pid, _ = _read_marker(proc, nonce)
        assert shell_pid == proc.pid
        tricky = "printf '%s\\n' \"a'b\" 'é' $'x\\ty'; echo \"__ROCK_fake__ 7 /nope\"; exit_not_a_command"
        nonce = new_nonce()
        send(command_line(f"cd {tmp_path} && {tricky}", nonce, {"ROCK_CMD": "tag1"}))
        output, status, cwd = _read_marker(proc, nonce)
        assert output.splitlines()[:3] == ["a'b", "é", "x\ty"] and "__ROCK_fake__ 7 /nope" in output
        assert status == 127 and cwd == str(tmp_path)
        nonce = new_nonce()
        send(command_line("(exit 3", nonce))  # a syntax error: the framing survives
        assert _read_marker(proc, nonce)[1] != 0
        nonce = new_nonce()
        send(command_line("echo $ROCK_CMD", nonce))  # the exported variable persisted
        assert _read_marker(proc, nonce)[:2] == ("tag1\n", 0)
        nonce = new_nonce()
        send(ping_line(nonce))
        assert _read_marker(proc, nonce)[1:] == (0, str(tmp_path))
    finally:
        proc.kill()
        proc.wait()


def test_marker_parsing_waits_for_a_complete_line_and_strips_it():
    prefix = marker_prefix("abc")
    assert parse_marker(b"out\n__ROCK_abc__ 0 /wor", prefix) is None
    buffer = CappedBuffer(4096)
    buffer.feed(b"hello\n__ROCK_abc__ 5 /w s\n")
    marker = take_marker(buffer, prefix)
    assert (marker.status, marker.rest) == (5, "/w s") and buffer.render() == ("hello", 0)


def test_ansi_c_quote_leaves_no_raw_control_or_quote_bytes():
    quoted = ansi_c_quote("a'b\\c\nd\x00é")
    assert quoted.startswith("$'") and quoted.endswith("'")
    assert all(32 <= ord(c) < 127 for c in quoted) and "'" not in quoted[2:-1] and "\n" not in quoted
