from iflow.backends.base import DEFAULT_SESSION, TOOLS_SESSION, ToolsBackend, as_backend
from iflow.backends.local import LocalBackend
from iflow.backends.rock_backend import RockBackend

__all__ = ["DEFAULT_SESSION", "TOOLS_SESSION", "LocalBackend", "RockBackend", "ToolsBackend", "as_backend"]
