"""The bpftrace program and the parser of its output. Only processes whose UTS hostname starts with `rock-` are
traced: every sandbox gets its own name as hostname, and without CAP_SYS_ADMIN it cannot change it."""
from __future__ import annotations

import socket
import time
from pathlib import Path

from rock.telemetry.events import Observation

SENSITIVE_PREFIXES = [
    "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/", "/proc/1/", "/proc/kcore", "/dev/mem",
    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/sys/fs/cgroup/", "/sys/kernel/",
    "/proc/sysrq-trigger", "/etc/ssh/", "/proc/self/environ",
]
ESCAPE_SYSCALLS = ["mount", "umount", "umount2", "setns", "unshare", "ptrace", "pivot_root", "init_module", "finit_module",
                   "kexec_load", "bpf", "open_by_handle_at", "chroot"]
NODE = "curtask->nsproxy->uts_ns->name.nodename"
IN_SANDBOX = f'strncmp({NODE}, "rock-", 5) == 0'
HEAD = "nsecs, pid, curtask->real_parent->tgid, uid, comm, curtask->nsproxy->uts_ns->ns.inum"


TRACEFS = [Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")]


def available_syscall_tracepoints(names: list[str]) -> list[str]:
    for root in TRACEFS:
        events = root / "events" / "syscalls"
        if events.is_dir():
            return [name for name in names if (events / f"sys_enter_{name}").is_dir()]
    return []


def program() -> str:
    """The bpftrace source. Each event is one tab-separated line: kind, ns since boot, pid, ppid, uid, comm,
    sandbox, then kind-specific fields."""
    opens = " || ".join(f'strncmp($p, "{prefix}", {len(prefix)}) == 0' for prefix in SENSITIVE_PREFIXES)
    escape = "\n".join(
        f'tracepoint:syscalls:sys_enter_{name} / {IN_SANDBOX} / '
        f'{{ printf("S\\t%llu\\t%d\\t%d\\t%d\\t%s\\t%u\\t{name}\\n", {HEAD}); }}'
        for name in available_syscall_tracepoints(ESCAPE_SYSCALLS))
    return f"""
BEGIN {{ printf("READY\\n"); }}
tracepoint:syscalls:sys_enter_execve / {IN_SANDBOX} /
{{
  printf("X\\t%llu\\t%d\\t%d\\t%d\\t%s\\t%u\\t%s\\t", {HEAD}, str(args->filename));
  join(args->argv);
}}
tracepoint:syscalls:sys_enter_connect / {IN_SANDBOX} /
{{
  $family = ((struct sockaddr *)args->uservaddr)->sa_family;
  if ($family == 2) {{
    $in = (struct sockaddr_in *)args->uservaddr;
    printf("C\\t%llu\\t%d\\t%d\\t%d\\t%s\\t%u\\tinet\\t%s\\t%d\\n", {HEAD}, ntop(2, $in->sin_addr.s_addr), $in->sin_port);
  }}
  if ($family == 10) {{
    $in6 = (struct sockaddr_in6 *)args->uservaddr;
    printf("C\\t%llu\\t%d\\t%d\\t%d\\t%s\\t%u\\tinet6\\t%s\\t%d\\n", {HEAD}, ntop(10, $in6->sin6_addr.in6_u.u6_addr8),
           $in6->sin6_port);
  }}
}}
tracepoint:syscalls:sys_enter_openat / {IN_SANDBOX} /
{{
  $p = str(args->filename);
  if ({opens}) {{
    printf("O\\t%llu\\t%d\\t%d\\t%d\\t%s\\t%u\\t%s\\n", {HEAD}, $p);
  }}
}}
{escape}
"""


def boot_offset() -> float:
    """wall clock = boot clock + offset (bpftrace's nsecs is CLOCK_MONOTONIC, as is time.monotonic())."""
    return time.time() - time.monotonic()


def parse_line(line: str, offset: float) -> Observation | None:
    fields = line.rstrip("\n").split("\t")
    if len(fields) < 7 or fields[0] not in "XCOS" or not fields[6].startswith("rock-"):
        return None
    kind, nsecs, pid, ppid, uid, comm, sandbox, *rest = fields
    try:
        base = dict(time=int(nsecs) / 1e9 + offset, sandbox=sandbox, pid=int(pid), ppid=int(ppid), uid=int(uid),
                    comm=comm)
        if kind == "X" and len(rest) >= 2:
            return Observation(kind="exec", path=rest[0], argv=rest[1].split(" "), **base)
        if kind == "C" and len(rest) >= 3:
            port = socket.ntohs(int(rest[2]) & 0xFFFF)
            return Observation(kind="connect", family=rest[0], address=rest[1], port=port, **base)
        if kind == "O" and rest:
            return Observation(kind="open", path=rest[0], **base)
        if kind == "S" and rest:
            return Observation(kind="syscall", syscall=rest[0], **base)
    except ValueError:
        return None
    return None

