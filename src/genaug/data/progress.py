"""Mapping a function over many files, in threads, with a progress bar when there are many.

Decoding and header parsing spend their time in Pillow's C code and in file I/O, which
release the GIL, so a few threads give a real speed-up without worker processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

from genaug.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")

#: A progress bar is shown from this many items on ("more than a few hundred files").
PROGRESS_THRESHOLD = 300


def default_workers() -> int:
    """Threads used for file work: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def map_with_progress(
    function: Callable[[T], R], items: Sequence[T], description: str, *, workers: int | None = None
) -> list[R]:
    """``[function(item) for item in items]``, computed in a thread pool, in order.

    Shows a rich progress bar on stderr when there are at least :data:`PROGRESS_THRESHOLD`
    items; exceptions from ``function`` propagate (callers catch the ones they expect).
    """
    workers = workers or default_workers()
    if len(items) < PROGRESS_THRESHOLD:
        if workers == 1 or len(items) < 2 * workers:
            return [function(item) for item in items]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(function, items))

    results: list[R] = []
    with progress_bar(len(items), description, stderr=True, transient=True) as bar, ThreadPoolExecutor(workers) as pool:
        for result in pool.map(function, items):
            results.append(result)
            bar.advance()
    return results
