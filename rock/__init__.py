"""ROCK: hardened Docker sandboxes with persistent shell sessions, file transfer, limits, a pool and an audit log."""
from rock.aio import AsyncSandbox
from rock.config import DEFAULT_IMAGE, SandboxConfig
from rock.engine import EngineUnavailable
from rock.records import AuditLog, CommandRecord, CommandResult
from rock.pool import SandboxPool
from rock.sandbox import Sandbox, SandboxError

__all__ = ["AsyncSandbox", "SandboxPool", "DEFAULT_IMAGE", "AuditLog", "CommandRecord", "CommandResult", "EngineUnavailable", "Sandbox",
           "SandboxConfig", "SandboxError"]
