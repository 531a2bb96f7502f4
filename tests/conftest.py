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

import pytest

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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny models run faster so, and the test machine is shared."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def genaug_home(tmp_path, monkeypatch):
    """This test's own GENAUG_HOME (``pytestmark = pytest.mark.usefixtures("genaug_home")``)."""
    home = tmp_path / "home"
    monkeypatch.setenv("GENAUG_HOME", str(home))
    return home


@pytest.fixture
def single_process_home(genaug_home, monkeypatch):
    """This test's own GENAUG_HOME and no torchrun variables: one process."""
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> str:
    """A tiny randomly initialised SD folder with the pocket architecture, one per test module."""
    from genaug.pocket.tiny import make_tiny_pocket

    return str(make_tiny_pocket(tmp_path_factory.mktemp("tiny"), models=["sd"])["sd"])


@pytest.fixture(scope="module")
def splits():
    """5 train and 5 val pocket digits per class and every 4th test digit (~113 keep tests
    quick); a module may define its own ``splits``."""
    import numpy as np

    from training_helpers import pocket_splits

    full = pocket_splits(labels_per_class=5, val_per_class=5)
    full["test"] = full["test"].subset(np.arange(0, len(full["test"]), 4))
    return full
