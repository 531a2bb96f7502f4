"""The test session's GENAUG_HOME: a temporary folder, never the user's cache.

Every test, and every process a test starts (they inherit the environment), caches
fractal banks, packed datasets, judges and rehearsal stand-ins in one folder made for
the session and removed at its end. Caches are remade in each new home, which costs
time (the rehearsal stand-ins take about a minute); ``GENAUG_TEST_HOME=/some/folder``
keeps them between sessions in that folder (created if missing, never removed). A test
that sets GENAUG_HOME itself (``monkeypatch.setenv``) still gets its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_session: dict[str, object] = {}


def pytest_configure(config) -> None:
    kept = os.environ.get("GENAUG_TEST_HOME")
    if kept:
        home, remove = Path(kept).expanduser().resolve(), False
        home.mkdir(parents=True, exist_ok=True)
    else:
        home, remove = Path(tempfile.mkdtemp(prefix="genaug-test-home-")), True
    _session.update(home=home, remove=remove, previous=os.environ.get("GENAUG_HOME"))
    os.environ["GENAUG_HOME"] = str(home)


def pytest_unconfigure(config) -> None:
    if "home" not in _session:
        return
    previous = _session["previous"]
    if previous is None:
        os.environ.pop("GENAUG_HOME", None)
    else:
        os.environ["GENAUG_HOME"] = str(previous)
    if _session["remove"]:
        shutil.rmtree(_session["home"], ignore_errors=True)
    _session.clear()
