"""Checks, at every sandbox start, that the container is confined as rock relies on, failing the start otherwise.

The telemetry tells sandboxes apart by UTS hostname, which a process without CAP_SYS_ADMIN cannot change. But a
process that may create a user namespace gets CAP_SYS_ADMIN inside it, and with it a UTS namespace and any hostname
(`unshare -Uru hostname x`): only the seccomp profile (Docker's default denies unshare/clone of namespaces without
CAP_SYS_ADMIN) prevents that. So the session shell must be under a seccomp filter with no_new_privs, and, once per
process and profile, creating a user namespace inside the sandbox must be seen to fail."""
from __future__ import annotations

import logging
import threading
from typing import Any

from rock.procfs import PROC

log = logging.getLogger("rock.confinement")
SECCOMP_FILTER = 2
_probed: set[str] = set()
_probe_lock = threading.Lock()


class ConfinementError(RuntimeError):
    pass


def status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _shell_status(sandbox: Any) -> dict[str, str]:
    shell = sandbox.session().verified_shell()
    if shell is not None:
        try:
            return status_fields((PROC / str(shell[0]) / "status").read_text())
        except OSError:
            pass
    code, out = sandbox.exec(["cat", "/proc/self/status"], timeout=15)
    return status_fields(out) if code == 0 else {}


def check_confinement(sandbox: Any) -> None:
    """Raise ConfinementError unless the sandbox's processes are under seccomp with no_new_privs (and, without
    cap_add, no effective capabilities), and user namespaces cannot be created inside it."""
    status = _shell_status(sandbox)
    if status.get("Seccomp") != str(SECCOMP_FILTER):
        raise ConfinementError(f"sandbox processes are not under a seccomp filter (Seccomp: "
                               f"{status.get('Seccomp', 'unknown')}); the engine must apply its default profile")
    if status.get("NoNewPrivs") != "1":
        raise ConfinementError("sandbox processes may gain privileges (NoNewPrivs is not set)")
    if not sandbox.config.cap_add and int(status.get("CapEff", "0") or "0", 16) != 0:
        raise ConfinementError(f"sandbox processes hold capabilities (CapEff {status['CapEff']})")
    _probe_user_namespaces(sandbox)


def _probe_user_namespaces(sandbox: Any) -> None:
    key = sandbox.config.seccomp_profile or "<engine default>"
    with _probe_lock:
        if key in _probed:
            return
    code, out = sandbox.exec(["unshare", "--user", "true"], timeout=15)
    if code == 0:
        raise ConfinementError(f"the sandbox user can create user namespaces (seccomp profile {key}): it could "
                               f"change its hostname and leave the tracer's view")
    if code in (126, 127):
        log.warning("cannot probe user namespaces in %s (no unshare binary): relying on the seccomp filter",
                    sandbox.config.image)
        return
    with _probe_lock:
        _probed.add(key)
