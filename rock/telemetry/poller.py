"""Degraded mode, for hosts without eBPF: poll the container's process table and socket table from inside.
It misses processes that live shorter than one interval, and says so (the monitor reports the degradation)."""
from __future__ import annotations

import ipaddress
import socket
import struct
import time

from rock.telemetry.events import Observation

TCP_STATES = {"01": "established", "02": "syn_sent"}
SCRIPT = "ps -eo pid=,ppid=,args= 2>/dev/null; echo __NET__; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"


def _decode_address(hex_address: str) -> tuple[str, int]:
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = struct.unpack("<4I", raw)
        ip = str(ipaddress.IPv6Address(struct.pack(">4I", *words)))
    return ip, int(port, 16)


class InContainerPoller:
    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.seen_pids: set[int] = set()
        self.seen_sockets: set[tuple[str, int, str]] = set()

    def poll(self) -> list[Observation]:
        code, output = self.sandbox.exec(["sh", "-c", SCRIPT], timeout=10)
        now = time.time()
        processes, _, net = output.partition("__NET__")
        observations = []
        for line in processes.splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3 or not parts[0].isdigit():
                continue
            pid = int(parts[0])
            if pid in self.seen_pids or "__NET__" in parts[2] or parts[2].startswith("ps -eo"):
                continue
            self.seen_pids.add(pid)
            observations.append(Observation(kind="exec", time=now, sandbox=self.sandbox.name, pid=pid,
                                            ppid=int(parts[1]), argv=parts[2].split(" "),
                                            path=parts[2].split(" ")[0], data={"source": "poller"}))
        for line in net.splitlines():
            fields = line.split()
            if len(fields) < 4 or fields[3] not in TCP_STATES or ":" not in fields[2]:
                continue
            address, port = _decode_address(fields[2])
            key = (address, port, fields[1])
            if key in self.seen_sockets:
                continue
            self.seen_sockets.add(key)
            observations.append(Observation(kind="connect", time=now, sandbox=self.sandbox.name, address=address,
                                            port=port, family="inet6" if ":" in address else "inet",
                                            data={"source": "poller", "state": TCP_STATES[fields[3]]}))
        return observations
