"""One class name, one prompt text: txt2img, the CLIP filters and SHB prompt a CUB-like class alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.clip import Clip
from genaug.config import FilterConfig, GenerateConfig
from genaug.data import load_dataset
from genaug.data.names import class_prompt
from genaug.filtering import filter_set
from genaug.generation.stage import generate
from genaug.manifest import read_manifest
from genaug.mixing.shb import semantic_hybrid_blend
from genaug.pocket.tiny import make_tiny_pocket

CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross")
PROMPTS = {
    "001.Black_footed_Albatross": "a photo of a Black footed Albatross",
    "002.Laysan_Albatross": "a photo of a Laysan Albatross",
}


def test_class_prompt_cleans_the_name_once_for_every_placeholder():
    assert class_prompt("a photo of a {class}", "001.Black_footed_Albatross") == "a photo of a Black footed Albatross"
    assert class_prompt("a photo of a {}", "001.Black_footed_Albatross") == "a photo of a Black footed Albatross"
    assert class_prompt("{class}, {class}", "aquarium_fish") == "aquarium fish, aquarium fish"
    assert class_prompt("a photo of a {class}", "aquarium fish") == "a photo of a aquarium fish"
    assert class_prompt("make it red on blue", "001.Black_footed_Albatross") == "make it red on blue"
    assert class_prompt("{size} {class}", "3") == "{size} 3"  # other braces stay; a bare number stays


class RecordingClip:
    """A CLIP that notes every text it embeds (everything else is the real wrapper's)."""

    def __init__(self, clip: Clip) -> None:
        self._clip, self.texts = clip, []

    def text_embeds(self, texts, *args, **kwargs):
        self.texts += list(texts)
        return self._clip.text_embeds(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._clip, name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return make_tiny_pocket(tmp_path_factory.mktemp("tiny"), models=("sd", "clip"))


@pytest.fixture(scope="module")
def cub_like(tmp_path_factory):
    """A class-folder tree named like CUB-200 (``001.Black_footed_Albatross/...``), 4 images a class."""
    root = tmp_path_factory.mktemp("cub")
    rng = np.random.default_rng(0)
    for name in CUB_CLASSES:
        (root / name).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{name[:3]}_{i}.png")
    return load_dataset({"name": "folder", "root": str(root), "image_size": 16, "labels_per_class": "all",
                         "val_fraction": 0.25, "test_fraction": 0.25})


def test_txt2img_records_prompt_the_clean_class_name(tmp_path, tiny, cub_like, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    config = GenerateConfig(
        output=tmp_path / "t2i", prompts=["a photo of a {class}"], regime="single",
        editor={"name": "txt2img", "model": str(tiny["sd"]), "steps": 2}, engine={"progress": False},
    )
    generate(config, dataset=cub_like)
    records = read_manifest(tmp_path / "t2i")
    assert records and {record.class_name for record in records} == set(CUB_CLASSES)
    assert all(record.prompt == PROMPTS[record.class_name] for record in records)


def test_clip_rank_and_posneg_texts_are_the_clean_class_prompts(tmp_path, tiny, cub_like):
    from genaug.manifest import SampleRecord, SetWriter

    with SetWriter(tmp_path / "set") as writer:
        for row in range(len(cub_like)):
            name = cub_like.class_names[cub_like.labels[row]]
            record = SampleRecord(id=f"img-{row:02d}", path=writer.image_path(f"img-{row:02d}", name),
                                  label=int(cub_like.labels[row]), class_name=name, method="txt2img")
            writer.add(record, cub_like.rgb(row))
    clip = RecordingClip(Clip.from_reference(str(tiny["clip"])))
    filters = [{"name": "clip_rank", "keep_ratio": 0.5}, {"name": "clip_posneg"}]
    filter_set(FilterConfig(set_dir=tmp_path / "set", filters=filters, clip=str(tiny["clip"]), progress=False), clip=clip)
    # clip_rank: one text per class; clip_posneg: each class's positive, then the other class's
    assert clip.texts == [PROMPTS[CUB_CLASSES[0]], PROMPTS[CUB_CLASSES[1]],
                          PROMPTS[CUB_CLASSES[0]], PROMPTS[CUB_CLASSES[1]], PROMPTS[CUB_CLASSES[1]], PROMPTS[CUB_CLASSES[0]]]


def test_shb_texts_are_the_clean_class_prompts(tiny, cub_like):
    clip = RecordingClip(Clip.from_reference(str(tiny["clip"])))
    rows = [0, len(cub_like) - 1]
    originals = torch.from_numpy(np.stack([cub_like.rgb(row) for row in rows])).permute(0, 3, 1, 2).contiguous()
    names = [cub_like.class_names[cub_like.labels[row]] for row in rows]
    semantic_hybrid_blend(originals, originals.flip(0), names, clip, patch=8, stride=4)
    assert clip.texts == [PROMPTS[name] for name in names]
