"""The session's GENAUG_HOME (tests/conftest.py): a folder of the test session, inherited by subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from genaug.home import cache_dir, genaug_home


def test_the_session_home_is_not_the_users_cache_and_subprocesses_inherit_it():
    home = genaug_home()
    assert home == Path(os.environ["GENAUG_HOME"]) and home != Path.home() / ".cache" / "genaug"
    if not os.environ.get("GENAUG_TEST_HOME"):
        assert home.name.startswith("genaug-test-home-")
    assert cache_dir("fractals").parent == home
    child = subprocess.run([sys.executable, "-c", "from genaug.home import genaug_home; print(genaug_home())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(home)


def test_a_test_may_still_set_its_own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "own"))
    assert genaug_home() == tmp_path / "own" and (tmp_path / "own").is_dir()
