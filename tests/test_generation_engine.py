"""The generation engine without a diffusion model: seeds, batches, resume, shards, back-off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genaug.config import ConfigError, EngineConfig, GenerateConfig, parse_config
from genaug.generation.degenerate import BLACK_LEVEL, WHITE_LEVEL, is_degenerate
from genaug.generation.engine import BatchRenderer, plan_batches, run_job
from genaug.generation.items import WorkItem, sanitize_id
from genaug.generation.models import ModelError, resolve_model, weights_hash
from genaug.data.names import class_prompt
from genaug.generation.prompts import DIFFUSEMIX_PROMPTS, POCKET_INSTRUCTIONS, prompt_indices, resolve_prompts
from genaug.generation.runtime import Shard, parse_shard, resolve_shard, select_device
from genaug.generation.seeds import item_seed
from genaug.manifest import read_manifest
from genaug.memory import DoesNotFitError, is_out_of_memory

from generation_helpers import SeedRenderer, check_set_integrity, set_pixels


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def make_items(n: int, seed: int = 0) -> list[WorkItem]:
    return [WorkItem(id=f"item-{i:03d}", seed=item_seed(seed, f"item-{i:03d}"), label=i % 3, class_name=f"c{i % 3}") for i in range(n)]


def engine(**kw) -> EngineConfig:
    return EngineConfig(progress=False, **kw)


# ---------------------------------------------------------------------------- seeds and ids


def test_item_seed_is_a_pure_function_of_experiment_seed_id_and_attempt():
    assert item_seed(0, "a") == item_seed(0, "a") == item_seed(0, "a", 0)
    assert len({item_seed(0, "a"), item_seed(1, "a"), item_seed(0, "b"), item_seed(0, "a", 1)}) == 4
    assert all(0 <= item_seed(s, "x") < 2**63 for s in range(50))
    # pinned: changing the derivation silently would change every generated set
    assert item_seed(0, "pocket_0000-instruct-p0") == item_seed(0, "pocket_0000-instruct-p0")
    assert item_seed(7, "abc", 2) == int.from_bytes(__import__("hashlib").blake2b(b"7/abc/2", digest_size=8).digest(), "big") >> 1


def test_one_derivation_serves_items_and_training_streams():
    from genaug.seeds import derive_seed
    from genaug.training.seeding import training_seed

    blake = lambda key: __import__("hashlib").blake2b(key, digest_size=8).digest()  # noqa: E731
    assert item_seed(7, "abc", 2) == derive_seed(7, "abc", 2)
    # pinned: the training streams' seeds of every existing run
    assert training_seed(0, "augment", 7) == derive_seed(0, "augment", 7, byteorder="little")
    assert training_seed(0, "augment", 7) == int.from_bytes(blake(b"0/augment/7"), "little") >> 1


def test_sanitize_id_makes_valid_record_ids():
    assert sanitize_id("pocket/0003") == "pocket_0003"
    assert sanitize_id(".hidden name?.png") == "hidden_name_.png"
    assert sanitize_id("///") == "x"
    with pytest.raises(ValueError):
        WorkItem(id="bad/id", seed=0, label=0, class_name="c")


# ---------------------------------------------------------------------------- degenerate outputs


def test_degenerate_checks_black_and_white_both():
    h = w = 10
    mostly_black = np.full((h, w, 3), 120, np.uint8)
    mostly_black[:, :] = BLACK_LEVEL
    mostly_black[0, :1] = 200  # 1 % of pixels not black: 99 % black
    mostly_white = np.full((h, w, 3), WHITE_LEVEL, np.uint8)
    mostly_white[0, :1] = 0
    ninety = np.full((h, w, 3), 255, np.uint8)
    ninety[:1] = 100  # exactly 90 % white: not more than 90 %
    grey = np.full((h, w, 3), 128, np.uint8)
    coloured_dark = np.zeros((h, w, 3), np.uint8)
    coloured_dark[..., 0] = BLACK_LEVEL + 1  # one channel above the level: not black
    batch = np.stack([mostly_black, mostly_white, ninety, grey, coloured_dark])
    assert is_degenerate(batch).tolist() == [True, True, False, False, False]
    assert is_degenerate(mostly_white).tolist() == [True]


# ---------------------------------------------------------------------------- prompts


def test_prompt_regimes_and_presets():
    assert resolve_prompts("diffusemix") == list(DIFFUSEMIX_PROMPTS) and len(DIFFUSEMIX_PROMPTS) == 9
    assert "make it red on green" in POCKET_INSTRUCTIONS
    assert prompt_indices("single", 9, 0, "a", prompt_index=3) == [3]
    assert prompt_indices("all", 4, 0, "a") == [0, 1, 2, 3]
    drawn = [prompt_indices("random", 9, 0, f"img{i}")[0] for i in range(200)]
    assert drawn == [prompt_indices("random", 9, 0, f"img{i}")[0] for i in range(200)]
    assert set(drawn) == set(range(9))
    assert class_prompt("a photo of a {class}", "golden_retriever") == "a photo of a golden retriever"
    with pytest.raises(ValueError):
        prompt_indices("single", 2, 0, "a", prompt_index=5)


def test_configs_name_the_bad_field():
    with pytest.raises(ConfigError, match="editor"):
        parse_config(GenerateConfig, {"output": "x", "editor": {"name": "dalle"}})
    with pytest.raises(ConfigError, match="prompts"):
        parse_config(GenerateConfig, {"output": "x", "prompts": "nonexistent"})
    with pytest.raises(ConfigError, match="shard"):
        parse_config(GenerateConfig, {"output": "x", "engine": {"shard": "3/2"}})


def test_planned_items_carry_the_editor_negative_prompt():
    """Records state the negative prompt the pipeline was given, not only the stage config."""
    from genaug.data.base import RealDataset
    from genaug.generation.stage import plan_edit_items, plan_text_items

    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    dataset = RealDataset("t", "train", ["a", "b"], np.array([0, 1, 1]), ["x0", "x1", "x2"], images=images)
    cfg = parse_config(GenerateConfig, {"output": "x", "regime": "all", "editor": {"name": "instruct", "negative_prompt": "blurry"}})
    for plan in (plan_edit_items, plan_text_items):
        items = plan(dataset, "instruct", ["p {class}", "q"], cfg)
        assert len(items) == 6 and {item.negative_prompt for item in items} == {"blurry"}
    plain = parse_config(GenerateConfig, {"output": "x"})
    assert {item.negative_prompt for item in plan_edit_items(dataset, "instruct", ["p"], plain)} == {None}


# ---------------------------------------------------------------------------- runtime


def test_device_selection_on_cpu():
    if not torch.cuda.is_available():
        assert select_device() == (torch.device("cpu"), torch.float32)
    assert select_device("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="fp16"):
        select_device("cpu", "fp16")


def test_shards_from_option_and_environment(monkeypatch):
    assert parse_shard("1/4") == Shard(1, 4, launched=False)
    with pytest.raises(ValueError):
        parse_shard("4/4")
    assert resolve_shard(None) == Shard(0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert resolve_shard(None) == Shard(1, 2, launched=True)
    assert resolve_shard("0/3") == Shard(0, 3, launched=False)  # an explicit shard wins


# ---------------------------------------------------------------------------- the engine


def test_plan_batches_is_a_fixed_cut_of_the_job():
    items = make_items(10)
    plan = plan_batches(items, 4)
    assert [len(b) for b in plan] == [4, 4, 2]
    assert [i.id for b in plan for i in b] == [i.id for i in items]


def test_run_job_writes_every_item_and_a_rerun_makes_nothing(tmp_path):
    items, renderer = make_items(10), SeedRenderer()
    report = run_job(items, renderer, tmp_path / "set", experiment_seed=0, engine=engine(batch_size=4), model={"path": "fake"})
    assert report.made == 10 and renderer.calls == [4, 4, 2]
    records = {r.id: r for r in read_manifest(tmp_path / "set")}
    assert sorted(records) == [i.id for i in items]
    first = records["item-000"]
    assert first.seed == items[0].seed and first.params["attempts"] == 1 and first.model == {"path": "fake"}
    assert first.path == "images/c0/item-000.png"
    check_set_integrity(tmp_path / "set")
    again = run_job(items, SeedRenderer(), tmp_path / "set", experiment_seed=0, engine=engine(batch_size=4))
    assert again.made == 0 and again.already_done == 10


def test_a_partly_recorded_batch_is_remade_whole_and_only_missing_items_written(tmp_path):
    items = make_items(8)
    run_job(items, SeedRenderer(), tmp_path / "full", experiment_seed=0, engine=engine(batch_size=4))
    # simulate a kill after the first batch and one record of the second
    run_job(items[:4], SeedRenderer(), tmp_path / "part", experiment_seed=0, engine=engine(batch_size=4))
    run_job(items[4:5], SeedRenderer(), tmp_path / "part", experiment_seed=0, engine=engine(batch_size=4))
    renderer = SeedRenderer()
    report = run_job(items, renderer, tmp_path / "part", experiment_seed=0, engine=engine(batch_size=4))
    assert renderer.calls == [4] and report.made == 3
    full, part = set_pixels(tmp_path / "full"), set_pixels(tmp_path / "part")
    assert full.keys() == part.keys() and all(np.array_equal(full[k], part[k]) for k in full)
    check_set_integrity(tmp_path / "part")


def test_explicit_shards_split_the_batches_and_merge_to_the_whole(tmp_path):
    from genaug.manifest import merge_shards

    items = make_items(11)
    for rank in range(3):
        run_job(items, SeedRenderer(), tmp_path / "sharded", experiment_seed=0, engine=engine(batch_size=2, shard=f"{rank}/3"))
    assert sorted(p.name for p in (tmp_path / "sharded").glob("manifest*")) == [f"manifest.{r}.jsonl" for r in range(3)]
    merge_shards(tmp_path / "sharded")
    run_job(items, SeedRenderer(), tmp_path / "single", experiment_seed=0, engine=engine(batch_size=2))
    a, b = set_pixels(tmp_path / "sharded"), set_pixels(tmp_path / "single")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    check_set_integrity(tmp_path / "sharded")


class FailingRenderer(SeedRenderer):
    """Raises an out-of-memory error whenever asked for more than ``limit`` images."""

    def __init__(self, limit: int, error: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.limit, self.error = limit, error

    def render(self, items, seeds):
        if len(items) > self.limit:
            self.calls.append(-len(items))
            raise self.error("CPU out of memory: tried to allocate 2.00 GiB")
        return super().render(items, seeds)


def test_out_of_memory_halves_the_batch_and_keeps_the_pixels(tmp_path):
    items = make_items(8)
    renderer = FailingRenderer(limit=2)
    report = run_job(items, renderer, tmp_path / "oom", experiment_seed=0, engine=engine(batch_size=8))
    assert renderer.calls[:3] == [-8, -4, 2] and report.batch_size == 2 and report.made == 8
    assert {record.params["batch_size"] for record in read_manifest(tmp_path / "oom")} == {2}
    run_job(items, SeedRenderer(), tmp_path / "ok", experiment_seed=0, engine=engine(batch_size=8))
    a, b = set_pixels(tmp_path / "oom"), set_pixels(tmp_path / "ok")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_out_of_memory_detection_and_other_errors_pass_through():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    renderer = BatchRenderer(FailingRenderer(limit=0, error=torch.cuda.OutOfMemoryError), batch_size=2)
    with pytest.raises(DoesNotFitError, match=r"generate fake: item item-000 does not fit in memory even alone \(it needed 2.00 GiB more\)"):
        renderer(make_items(2), [1, 2])  # down to one image: nothing left to halve
    shape_error = BatchRenderer(FailingRenderer(limit=0, error=lambda text: RuntimeError("shape mismatch")), batch_size=2)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        shape_error(make_items(2), [1, 2])


class BlackForSeeds(SeedRenderer):
    """All-black images for the given seeds (degenerate), noise otherwise."""

    def __init__(self, black_seeds: set[int]) -> None:
        super().__init__()
        self.black_seeds = black_seeds

    def render(self, items, seeds):
        images = super().render(items, seeds)
        for i, seed in enumerate(seeds):
            if seed in self.black_seeds:
                images[i] = 0
        return images


def test_degenerate_outputs_are_regenerated_with_the_next_seeds(tmp_path):
    items = make_items(4)
    once = {item_seed(0, "item-001", 0)}  # item 1: first attempt black
    always = {item_seed(0, "item-002", a) for a in range(4)}  # item 2: black every time
    run_job(items, BlackForSeeds(once | always), tmp_path / "s", experiment_seed=0, engine=engine(batch_size=4, max_regenerations=3))
    records = {r.id: r for r in read_manifest(tmp_path / "s")}
    assert records["item-000"].params["attempts"] == 1
    assert records["item-001"].params["attempts"] == 2 and records["item-001"].seed == item_seed(0, "item-001", 1)
    assert records["item-001"].kept and "degenerate" not in records["item-001"].params
    assert records["item-002"].params["attempts"] == 4 and records["item-002"].params["degenerate"] is True
    assert records["item-002"].kept is False


def test_dry_run_counts_and_estimates_without_writing(tmp_path, capsys):
    items = make_items(6)
    run_job(items[:2], SeedRenderer(), tmp_path / "s", experiment_seed=0, engine=engine(batch_size=2))
    report = run_job(items, SeedRenderer(), tmp_path / "s", experiment_seed=0, engine=engine(batch_size=2, dry_run=True))
    assert report.already_done == 2 and report.made == 0
    assert report.estimate_source == "stored rate" and report.estimated_seconds is not None
    assert len(read_manifest(tmp_path / "s")) == 2
    assert "4 to make" in capsys.readouterr().err
    fresh = run_job(items, SeedRenderer(size=5), tmp_path / "t", experiment_seed=0, engine=engine(batch_size=2, dry_run=True))
    assert fresh.estimate_source == "one timed batch" and not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------- model identity


def test_local_model_identity_hashes_the_safetensors(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    save_file({"w": torch.ones(3)}, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    (folder / "model_index.json").write_text("{}")
    ref = resolve_model(str(folder))
    assert ref.location == str(folder.resolve()) and ref.identity["hash"] == weights_hash(folder)
    assert ref.identity["hash"].startswith("sha256:")
    save_file({"w": torch.zeros(3)}, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert weights_hash(folder) != ref.identity["hash"]  # content, not names


def test_hub_model_identity_records_id_and_cached_commit(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-sd"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = resolve_model("org/tiny-sd")
    assert ref.location == "org/tiny-sd" and ref.revision == commit  # loads the commit it records
    assert ref.identity == {"id": "org/tiny-sd", "revision": "main", "hash": commit}


def test_uncached_hub_model_is_pinned_to_the_hubs_commit(tmp_path, monkeypatch):
    """Not cached yet: the commit comes from the hub before the download, and the download is
    pinned to it; when the hub cannot be reached it is a ModelError."""
    import huggingface_hub
    import huggingface_hub.constants as constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    asked = []

    def model_info(self, repo_id, revision=None, **kw):
        asked.append((repo_id, revision))
        return type("Info", (), {"sha": commit})()

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    ref = resolve_model("org/other-sd", revision="v2")
    assert asked == [("org/other-sd", "v2")]
    assert ref.revision == commit and ref.identity == {"id": "org/other-sd", "revision": "v2", "hash": commit}

    def offline(self, repo_id, revision=None, **kw):
        raise OfflineModeIsEnabled("offline")

    # Not cached and no hub: nothing could load it, so it is an error naming the remedies.
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    with pytest.raises(ModelError, match=r"^editor.model: model 'org/other-sd' is not in the Hugging Face cache .*"
                                         r"\(HF_HUB_OFFLINE is set\); use a local pipeline folder .*\(hf download org/other-sd\)$"):
        resolve_model("org/other-sd", revision="v2", field="editor.model")
