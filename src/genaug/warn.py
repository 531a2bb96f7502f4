"""Warnings a user should read once: printed on stderr as ``warning: ...`` and kept in a log.

A warning is for something that runs but is probably not what the user meant (a recipe
that trains 64 px photos at 16 px, pocket models on photos, ...). It is printed once per
message in a run: once here, and not again in the worker processes that a run spawns
(they inherit the list of shown messages through the environment). Every call with a
``log`` appends the line to that text file (``warnings.log`` in a run folder), so each
run folder keeps the warnings that concern it even when they were printed earlier.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__all__ = ["WARNINGS_LOG", "warn_once", "record_warnings", "shown_warnings", "forget_warnings"]

#: The file in a run folder that keeps its warnings, one per line.
WARNINGS_LOG = "warnings.log"
#: Environment variable listing the digests of the warnings shown in this run (inherited by workers).
_SHOWN_ENV = "GENAUG_WARNINGS_SHOWN"
_shown_here: list[str] = []


def _digest(message: str) -> str:
    return hashlib.sha256(message.encode("utf-8")).hexdigest()[:12]


def warn_once(message: str, log: str | Path | None = None) -> bool:
    """Print ``warning: <message>`` on stderr unless this run already showed it; record it in ``log``.

    Returns whether it was printed. ``log`` (a file) is appended to whenever given and its
    folder exists, so that a warning shown by the run also lands in each run folder it
    concerns.
    """
    digest = _digest(message)
    shown = os.environ.get(_SHOWN_ENV, "").split(",")
    printed = digest not in shown
    if printed:
        os.environ[_SHOWN_ENV] = ",".join([*filter(None, shown), digest])
        _shown_here.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
    if log is not None:
        record_warnings(log, [message])
    return printed


def record_warnings(log: str | Path, messages: list[str]) -> None:
    """Append ``messages`` to the text file ``log`` (each once; its folder must exist)."""
    log = Path(log)
    if not messages or not log.parent.is_dir():
        return
    present = set(log.read_text(encoding="utf-8").splitlines()) if log.is_file() else set()
    new = [line for line in dict.fromkeys(messages) if line not in present]
    if new:
        with log.open("a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in new)


def shown_warnings() -> list[str]:
    """The messages this process printed, in order (for a run to record once its folder exists)."""
    return list(_shown_here)


def forget_warnings() -> None:
    """Start over: every warning is printed again (a new run in the same process, tests)."""
    os.environ.pop(_SHOWN_ENV, None)
    _shown_here.clear()
