"""Tasks: the JSON-lines task record, datasets, the embedded secret-word family, its scripted expert, and workspace
set-up / verification in a sandbox."""
from roll.tasks.config import TaskConfig
from roll.tasks.dataset import load_tasks, read_tasks, write_tasks
from roll.tasks.schema import Limits, TaskRecord, Verifier

__all__ = ["Limits", "TaskConfig", "TaskRecord", "Verifier", "load_tasks", "read_tasks", "write_tasks"]
