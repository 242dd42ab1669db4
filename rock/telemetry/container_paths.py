"""Resolve a path a sandboxed process passed to the kernel into the absolute path inside its container, the way the
kernel will: relative to its cwd or directory fd, `.`/`..`/`//` folded, symlinks followed inside the container's
root (read from the host through /proc/PID/root, readlink only: nothing is opened), `/proc/self/root/...` taken back
to `/`. Sensitive files are then matched on the resolved path, not on the string the agent chose."""
from __future__ import annotations

import os
import re

AT_FDCWD = -100
MAX_LINKS = 40  # as the kernel's own limit on symlinks in one lookup
PROC_ROOT = re.compile(r"^/proc/(self|thread-self|\d+)/root$")
PROC_CWD = re.compile(r"^/proc/(self|thread-self)/cwd$")

SENSITIVE_PREFIXES = [
    "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/", "/proc/1/", "/proc/kcore", "/dev/mem",
    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/sys/fs/cgroup/", "/sys/kernel/",
    "/proc/sysrq-trigger", "/etc/ssh/", "/proc/self/environ",
]
# Secrets that live in any home directory (the sandbox user's, or root's).
HOME_SECRETS = re.compile(r"/(\.ssh/|\.aws/|\.netrc$|\.git-credentials$|\.docker/config\.json$|\.kube/|\.gnupg/|"
                          r"\.config/gcloud/|\.azure/|\.pgpass$|\.npmrc$|\.pypirc$|\.vault-token$)")
PROC_ENVIRON = re.compile(r"^/proc/(\d+|self|thread-self)/(task/\d+/)?environ$")


def is_sensitive(path: str) -> bool:
    return (any(path.startswith(prefix) for prefix in SENSITIVE_PREFIXES)
            or HOME_SECRETS.search(path) is not None or PROC_ENVIRON.match(path) is not None)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def base_directory(pid: int, dfd: int, fallback_pids: list[int]) -> str | None:
    """The directory a relative path starts from: the cwd (AT_FDCWD) or the directory fd, as the container sees it.
    A process that is already gone is replaced by its parent (same cwd in the common `cd x && cmd` case)."""
    for candidate in [pid, *fallback_pids]:
        link = _readlink(f"/proc/{candidate}/cwd") if dfd == AT_FDCWD else _readlink(f"/proc/{candidate}/fd/{dfd}")
        if link is not None and link.startswith("/"):
            return link
        if dfd != AT_FDCWD:  # a directory fd belongs to that one process
            break
    return None


# Root-owned system trees: the agent (never root) cannot plant links there, so their paths are only folded.
SYSTEM_TREES = ("/usr/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/proc/", "/sys/", "/dev/")


def fold(path: str) -> str:
    """`.`, `..` and `//` taken out, as the kernel would without links."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def resolve(path: str, root_pid: int | None, base: str | None) -> str:
    """The absolute container path `path` names (relative ones from `base`). Without a live root to follow links in
    (`root_pid` None), the path is folded lexically only."""
    if not path.startswith("/"):
        path = (base or "/") + "/" + path
    folded = fold(path)
    if folded.startswith(SYSTEM_TREES) and not (folded.startswith("/proc/") and ("/root" in folded or "/cwd" in folded)):
        return folded
    root = f"/proc/{root_pid}/root" if root_pid else None
    pending = [part for part in path.split("/") if part]
    parts: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
        current = "/" + "/".join(parts)
        if PROC_ROOT.match(current):
            parts = []
            continue
        if PROC_CWD.match(current) and base:
            parts = [p for p in base.split("/") if p]
            continue
        if root is None or current.startswith("/proc/"):  # /proc links name the reader, not the agent: not followed
            continue
        target = _readlink(root + current)
        if target is None:
            continue
        links += 1
        if links > MAX_LINKS:
            break
        parts.pop()
        if target.startswith("/"):
            parts = []
        pending = [p for p in target.split("/") if p] + pending
    return "/" + "/".join(parts)
