"""A rich progress bar for long work (rollouts, golden data), as a context manager that can be switched off."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    def __init__(self, progress: Progress | None, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, amount: float = 1.0) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id, amount)

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, note=text)

    def total(self, total: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, total=total)


@contextmanager
def progress_bar(description: str, total: float | None, enabled: bool = True,
                 console: Console | None = None) -> Iterator[Bar]:
    if not enabled:
        yield Bar(None, None)
        return
    progress = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                        console=console or Console(stderr=True), transient=False)
    with progress:
        yield Bar(progress, progress.add_task(description, total=total, note=""))
