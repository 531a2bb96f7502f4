"""Where the pocket models are looked up: env > complete rebuild in GENAUG_HOME > shipped."""

import json

import pytest

from genaug.pocket import store


def _fake_build(root):
    for m in store.MODEL_NAMES:
        (root / m).mkdir(parents=True)
    (root / "build.json").write_text(json.dumps({"spec_hash": "abc", "quick": False}))


def test_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("GENAUG_POCKET_DIR", raising=False)
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    assert store.pocket_root() == (store.SHIPPED_DIR, "shipped")
    for m in store.MODEL_NAMES:  # an incomplete rebuild (no build.json) never shadows the shipped weights
        (tmp_path / "home" / "pocket" / m).mkdir(parents=True)
    assert store.pocket_root()[1] == "shipped"
    (tmp_path / "home" / "pocket" / "build.json").write_text("{}")
    assert store.pocket_root() == (tmp_path / "home" / "pocket", "rebuilt")
    assert store.pocket_model_dir("sd") == tmp_path / "home" / "pocket" / "sd"
    _fake_build(tmp_path / "explicit")
    monkeypatch.setenv("GENAUG_POCKET_DIR", str(tmp_path / "explicit"))
    assert store.pocket_paths()["clip"] == tmp_path / "explicit" / "clip"
    info = store.pocket_info()
    assert info["source"] == "env" and info["spec_hash"] == "abc" and info["complete"]


def test_unknown_model_name():
    with pytest.raises(ValueError, match="clip, sd, ip2p"):
        store.pocket_model_dir("vae")
