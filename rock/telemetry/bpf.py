"""The bpftrace program. It runs with `-f json`, so every record reaches the daemon as one JSON object whose text is
escaped by bpftrace: a newline or tab in an argument cannot start a record of its own (see bpf_output.py).

Only processes whose UTS hostname starts with `rock-` are traced: every sandbox gets its own name as hostname, and
without CAP_SYS_ADMIN it cannot change it. Which sandbox a record belongs to is told by the UTS namespace inode
(the daemon maps it through the engine), never by a name the process chose. The only processes left out are the
runtime's own `runc` stages, recognised by the kernel's pid-namespace levels, not by name alone: their parent lives
outside the sandbox's pid namespace, which no process started inside a sandbox can arrange."""
from __future__ import annotations

from pathlib import Path

TRACEFS = [Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")]
ESCAPE_SYSCALLS = ["mount", "umount", "umount2", "setns", "unshare", "ptrace", "pivot_root", "init_module", "finit_module",
                   "kexec_load", "bpf", "open_by_handle_at", "chroot"]
OPEN_SYSCALLS = ["open", "openat", "openat2", "creat"]
EXEC_SYSCALLS = ["execve", "execveat"]
LINK_SYSCALLS = ["symlink", "symlinkat", "link", "linkat"]
MAX_ARGS = 24  # argv elements recorded per exec; the rest are counted as cut
STRLEN = 128  # bytes per string (BPFTRACE_STRLEN; 160 and more overflow the 512-byte BPF stack)
SYSTEM_TREES = ["/usr/lib/", "/lib/", "/usr/share/", "/usr/local/lib/"]  # skipped in the kernel (see below)
WALK_DEPTH = 12  # directory levels of a relative path's starting directory read in the kernel
HEARTBEAT_MS = 10  # the kernel-time watermark cadence (see spool.py)
# Files every dynamically linked program opens, skipped in the kernel by exact name (a map lookup), so that
# `/etc/ld.so.cache/../shadow` and friends still pass to user space, which resolves every other path.
HOT_FILES = ["/etc/ld.so.cache", "/dev/null", "/dev/tty", "/dev/urandom", "/etc/localtime", "/etc/nsswitch.conf",
             "/etc/passwd", "/etc/group", "/proc/self/maps", "/proc/meminfo", "/dev/pts/ptmx"]

NODE = "curtask->nsproxy->uts_ns->name.nodename"
IN_SANDBOX = f'strncmp({NODE}, "rock-", 5) == 0'
# A runtime stage: named runc* AND either its parent is in an outer pid namespace or it is itself outside the pid
# namespace it creates children in (runc's stages while they join the container). A process started inside a
# sandbox is neither: renaming a binary to runcx leaves it and its parent in the sandbox's pid namespace.
RUNTIME_STAGE = ('(strncmp(comm, "runc", 4) == 0 && '
                 '(curtask->real_parent->thread_pid->level < curtask->thread_pid->level || '
                 'curtask->thread_pid->level < curtask->nsproxy->pid_ns_for_children->level))')


def traced(host_level: int) -> str:
    """The predicate of every probe. A sandbox process lives in a pid namespace below the host's (`host_level`, the
    tracer's own); runc's first stages join the sandbox's UTS namespace while still in the host's."""
    return f"{IN_SANDBOX} && curtask->thread_pid->level > {host_level} && !{RUNTIME_STAGE}"


def host_pid_level() -> int:
    """How deep this process's pid namespace is (0 on a plain host): the number of ids in `NSpid:` minus one."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 2
    return 0
# kernel ns, thread id, process id, parent process id, uid, entry (parent outside the sandbox's pid namespace),
# process start and parent start (ns, CLOCK_MONOTONIC like the kernel time), UTS inode, cgroup id, comm (escaped by
# %r: no tab can hide in it)
HEAD_FORMAT = "%llu\\t%d\\t%d\\t%d\\t%d\\t%d\\t%llu\\t%llu\\t%u\\t%llu\\t%r"
HEAD_ARGS = ("$t, tid, pid, curtask->real_parent->tgid, uid, "
             "curtask->real_parent->thread_pid->level < curtask->thread_pid->level, "
             "curtask->start_time, curtask->real_parent->start_time, curtask->nsproxy->uts_ns->ns.inum, "
             "cgroup, buf(comm, 16)")
HEAD_FIELDS = ["ktime", "tid", "pid", "ppid", "uid", "entry", "start_ns", "parent_start_ns", "uts", "cgroup", "comm"]


def available_syscall_tracepoints(names: list[str]) -> list[str]:
    for root in TRACEFS:
        events = root / "events" / "syscalls"
        if events.is_dir():
            return [name for name in names if (events / f"sys_enter_{name}").is_dir()]
    return []


def _record(kind: str, extra_format: str = "", extra_args: str = "") -> str:
    fmt = f"{kind}\\t{HEAD_FORMAT}" + (f"\\t{extra_format}" if extra_format else "")
    args = HEAD_ARGS + (f", {extra_args}" if extra_args else "")
    return f'printf("{fmt}\\n", {args});'


def _argv_records() -> str:
    """One record per argument, keyed by (thread, kernel time) of its exec record."""
    lines = ["$more = 1;"]
    for index in range(MAX_ARGS):
        lines.append(f'if ($more) {{ $a{index} = args->argv[{index}]; if ($a{index} == 0) {{ $more = 0; }} else {{ '
                     f'printf("A\\t%llu\\t%d\\t{index}\\t%s\\n", $t, tid, str($a{index})); }} }}')
    lines.append(f'if ($more && args->argv[{MAX_ARGS}] != 0) {{ printf("A\\t%llu\\t%d\\t{MAX_ARGS}\\t...\\n", $t, tid); }}')
    return "\n  ".join(lines)


def _directory_walk(path: str, dfd: str) -> str:
    """For a path relative to the cwd: the cwd's names, leaf first, as `W` records, then an `E` record saying whether
    the walk reached the root. Read from the kernel at the syscall: the process may be gone before user space can
    read /proc/PID/cwd. (A directory fd is resolved from /proc/PID/fd: bpftrace 0.17 loses a pointer reassigned
    in a branch.)"""
    steps = "\n      ".join(
        'if ($d != $d->d_parent) { printf("W\\t%llu\\t%d\\t%s\\n", $t, tid, str($d->d_name.name)); '
        '$d = $d->d_parent; }' for _ in range(WALK_DEPTH))
    return f"""if (*(uint8 *)uptr({path}) != 47 && {dfd} == -100) {{
    $d = curtask->fs->pwd.dentry;
    {steps}
    printf("E\\t%llu\\t%d\\t%d\\n", $t, tid, $d == $d->d_parent);
  }}"""


def _system_tree_skip(path: str) -> str:
    """Sets $skip for a path in a root-owned system tree (most opens: libraries, Python's standard library) that
    cannot lead elsewhere: no `/.` or `//` anywhere (scanned byte by byte), and the agent, never root, cannot plant
    links there. Everything else goes to user space, which resolves it."""
    prefixes = " || ".join(f'strncmp(str({path}), "{prefix}", {len(prefix)}) == 0' for prefix in SYSTEM_TREES)
    return f"""$skip = 0;
    if ({prefixes}) {{
      $skip = 1; $i = 0; $prev = 0; $s = (uint64){path};
      while ($i < {STRLEN - 1}) {{
        $c = *(uint8 *)uptr($s + $i);
        if ($c == 0) {{ break; }}
        if ($prev == 47 && ($c == 46 || $c == 47)) {{ $skip = 0; break; }}
        $prev = $c; $i++;
      }}
    }}"""


def _exec_probe(name: str, host_level: int) -> str:
    dfd = "args->fd" if name == "execveat" else "-100"
    flags = "args->flags" if name == "execveat" else "0"
    record = _record("X", name + "\\t%d\\t%d\\t%s", f"{dfd}, {flags}, str(args->filename)")
    # execveat of a descriptor (fexecve, a memfd): the name of the file it points to, read from the kernel now
    fd_name = ('if (args->fd >= 0) { $file = *(curtask->files->fdt->fd + args->fd); '
               'printf("D\\t%llu\\t%d\\t%s\\n", $t, tid, str($file->f_path.dentry->d_name.name)); }'
               if name == "execveat" else "")
    return f"""tracepoint:syscalls:sys_enter_{name} / {traced(host_level)} /
{{
  $t = nsecs;
  {record}
  {fd_name}
  {_argv_records()}
}}"""


def _open_probe(name: str, host_level: int) -> str:
    dfd = "args->dfd" if name in ("openat", "openat2") else "-100"
    path = "args->pathname" if name == "creat" else "args->filename"
    flags = {"openat2": "0", "creat": "577"}.get(name, "args->flags")  # creat = O_CREAT|O_WRONLY|O_TRUNC
    record = _record("O", name + "\\t%d\\t%d\\t%s", f"{dfd}, {flags}, str({path})")
    return f"""tracepoint:syscalls:sys_enter_{name} / {traced(host_level)} /
{{
  $t = nsecs;
  if (@hot_files[str({path})] == 0) {{
    {_system_tree_skip(path)}
    if ($skip == 0) {{
      {record}
      {_directory_walk(path, dfd)}
    }}
  }}
}}"""


def _link_probe(name: str, host_level: int) -> str:
    """A symlink or hard link: its target and its new name as two records (each ends with its one free string)."""
    target = "args->oldname"
    link = "args->newname"
    dfd = {"symlinkat": "args->newdfd", "linkat": "args->newdfd"}.get(name, "-100")
    first = _record("L", name + "\\t%d\\ttarget\\t%s", f"{dfd}, str({target})")
    second = _record("L", name + "\\t%d\\tname\\t%s", f"{dfd}, str({link})")
    return f"""tracepoint:syscalls:sys_enter_{name} / {traced(host_level)} /
{{
  $t = nsecs;
  {first}
  {second}
  {_directory_walk(link, dfd)}
}}"""


def _connect_probes(host_level: int) -> list[str]:
    """One probe per address family (a program each: the BPF stack holds one record at a time)."""
    family = "((struct sockaddr *)args->uservaddr)->sa_family"
    abstract = "*(uint8 *)((uint64)args->uservaddr + 2) == 0"
    cases = [
        (f"{family} == 2", "$in = (struct sockaddr_in *)args->uservaddr;",
         _record("C", "inet\\t%d\\t%s", "$in->sin_port, ntop(2, $in->sin_addr.s_addr)")),
        (f"{family} == 10", "$in6 = (struct sockaddr_in6 *)args->uservaddr;",
         _record("C", "inet6\\t%d\\t%s", "$in6->sin6_port, ntop(10, $in6->sin6_addr.in6_u.u6_addr8)")),
        (f"{family} == 1 && {abstract}", "", _record("C", "unix\\t0\\t@%s", "str((uint64)args->uservaddr + 3)")),
        (f"{family} == 1 && !({abstract})", "", _record("C", "unix\\t0\\t%s", "str((uint64)args->uservaddr + 2)")
         + "\n  " + _directory_walk("(uint64)args->uservaddr + 2", "-100")),
    ]
    return [f"tracepoint:syscalls:sys_enter_connect / {traced(host_level)} && {condition} /\n{{\n  $t = nsecs; {setup}\n  {record}\n}}"
            for condition, setup, record in cases]


def _escape_probe(name: str, host_level: int) -> str:
    return (f"tracepoint:syscalls:sys_enter_{name} / {traced(host_level)} /\n"
            f"{{ $t = nsecs; {_record('S', name)} }}")


def program(host_level: int | None = None) -> str:
    """The bpftrace source. Records are tab-separated: kind, the HEAD_FIELDS, then kind-specific fields with the one
    free-form string (path, argument) always last. `H` carries the kernel time the output has reached."""
    host_level = host_pid_level() if host_level is None else host_level
    hot = " ".join(f'@hot_files["{name}"] = 1;' for name in HOT_FILES)
    probes = [f'BEGIN {{ {hot} printf("READY\\n"); }}',
              f'interval:ms:{HEARTBEAT_MS} {{ printf("H\\t%llu\\n", nsecs); }}',
              *_connect_probes(host_level)]
    probes += [_exec_probe(name, host_level) for name in available_syscall_tracepoints(EXEC_SYSCALLS)]
    probes += [_open_probe(name, host_level) for name in available_syscall_tracepoints(OPEN_SYSCALLS)]
    probes += [_link_probe(name, host_level) for name in available_syscall_tracepoints(LINK_SYSCALLS)]
    probes += [_escape_probe(name, host_level) for name in available_syscall_tracepoints(ESCAPE_SYSCALLS)]
    return "\n".join(probes) + "\n"


def bpftrace_environment() -> dict[str, str]:
    return {"BPFTRACE_STRLEN": str(STRLEN), "BPFTRACE_PERF_RB_PAGES": "512", "BPFTRACE_MAX_PROBES": "1024"}
