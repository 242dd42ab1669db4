from iflow.backends.base import DEFAULT_SESSION, TOOLS_SESSION, FileTooLarge, ToolsBackend
from iflow.backends.local import LocalBackend
from iflow.backends.rock_backend import RockBackend, as_backend

__all__ = ["DEFAULT_SESSION", "TOOLS_SESSION", "FileTooLarge", "LocalBackend", "RockBackend", "ToolsBackend",
           "as_backend"]
