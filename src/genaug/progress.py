"""The one progress bar: a rich bar with count, optional rate, elapsed time and ETA.

Every stage shows its progress through :func:`progress_bar`; callers decide whether it
shows (``enabled``: the stage's ``progress`` setting, rank 0, large enough work), and a
disabled bar is a no-op with the same methods, so loops do not branch on it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


class Bar:
    """A running bar (or a no-op one when disabled): :meth:`advance` and :meth:`update`."""

    def __init__(self, progress: Any = None, task: Any = None, start: float = 0) -> None:
        self._progress, self._task, self._start = progress, task, start

    @property
    def shown(self) -> bool:
        return self._progress is not None

    @property
    def completed(self) -> float:
        return self._progress.tasks[0].completed if self._progress is not None else 0.0

    def advance(self, count: float = 1, **fields: Any) -> None:
        """``count`` more done; ``fields`` update the bar's text fields (e.g. ``loss=0.1``)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=count, **self._with_rate(count, fields))

    def update(self, *, completed: float | None = None, description: str | None = None, **fields: Any) -> None:
        """Set the count done, the description or text fields."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, description=description, **fields)

    def _with_rate(self, count: float, fields: dict[str, Any]) -> dict[str, Any]:
        task = self._progress.tasks[0]
        if "rate" in task.fields:  # items per second done since the bar started (not those resumed)
            fields = {**fields, "rate": (task.completed + count - self._start) / max(task.elapsed or 0.0, 1e-9)}
        return fields


@contextlib.contextmanager
def progress_bar(
    total: float | None,
    description: str,
    *,
    enabled: bool = True,
    completed: float = 0,
    unit: str | None = None,
    detail: str | None = None,
    fields: dict[str, Any] | None = None,
    stderr: bool = False,
    transient: bool = False,
) -> Iterator[Bar]:
    """A bar over ``total`` items named ``description``, shown when ``enabled`` and ``total > 0``.

    Columns: description, bar, ``done/total``, ``<rate> <unit>/s`` when ``unit`` is given,
    elapsed time, ETA, then ``detail``: a rich format string over the bar's ``fields``
    (``"loss {task.fields[loss]}"``; ``fields`` are their starting values). ``stderr``
    draws on standard error; ``transient`` removes the bar when it ends.
    """
    if not enabled or not total or total <= 0:
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    start_fields = dict(fields or {})
    if unit is not None:
        columns.append(TextColumn(f"{{task.fields[rate]:.2f}} {unit}/s"))
        start_fields["rate"] = 0.0
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    if detail is not None:
        columns.append(TextColumn(detail))
    console = Console(stderr=True) if stderr else None
    with Progress(*columns, console=console, transient=transient) as progress:
        yield Bar(progress, progress.add_task(description, total=total, completed=completed, **start_fields), completed)
