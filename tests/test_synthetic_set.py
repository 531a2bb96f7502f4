"""Reading a synthetic set as a training split: kept records, class order, sources, resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.config import TrainConfig
from genaug.data import DatasetError, SyntheticSet, concat_synthetic_sets, load_dataset, load_synthetic_set
from genaug.data.packed import resize_uint8
from genaug.manifest import SampleRecord, SetWriter
from genaug.training import resolve_recipe
from genaug.training.trainer import build_train_pool


@pytest.fixture(autouse=True)
def _genaug_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def real():
    """Five pocket digits per class: the real training split the sets below are made from."""
    return load_dataset("pocket_digits", labels_per_class=5)


def recoloured(image: np.ndarray, copy: int) -> np.ndarray:
    """A real image with its colour channels rotated by ``copy + 1`` (a stand-in for an edit)."""
    return np.roll(image, copy + 1, axis=-1)


def write_recoloured_set(set_dir, real, rows=None, copies=1, size=None, with_sources=True, kept=None):
    """A synthetic set of ``copies`` recoloured versions of each real image in ``rows``.

    Record ``<row>-<copy>`` records its real source id (``with_sources``) like an edit, or
    none like a txt2img image; images are written at ``size`` (default: the real size).
    ``kept`` maps record ids to the filters' verdict. Returns the records in writing order.
    """
    rows = range(len(real)) if rows is None else rows
    records = []
    with SetWriter(set_dir) as writer:
        for row in rows:
            label = int(real.labels[row])
            for copy in range(copies):
                item_id = f"r{row:03d}-{copy}"
                image = recoloured(real.images[row], copy)
                if size is not None:
                    image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
                record = SampleRecord(
                    id=item_id,
                    path=writer.image_path(item_id, real.class_names[label]),
                    label=label,
                    class_name=real.class_names[label],
                    method="recolour",
                    source_ids=[real.ids[row]] if with_sources else [],
                    kept=(kept or {}).get(item_id, True),
                )
                writer.add(record, image)
                records.append(record)
    return records


def pocket_config():
    return resolve_recipe(TrainConfig(recipe="pocket"))


def test_a_set_reads_as_a_dataset_of_its_kept_records_with_their_sources(tmp_path, real):
    write_recoloured_set(tmp_path / "set", real, rows=[7, 2, 30], kept={"r002-0": False})
    loaded = load_synthetic_set(tmp_path / "set", class_names=real.class_names)
    assert isinstance(loaded, SyntheticSet) and loaded.split == "synthetic"
    assert loaded.ids == ["r007-0", "r030-0"]  # sorted by id; the filtered-out record is skipped
    assert loaded.class_names == real.class_names
    assert loaded.labels.tolist() == [real.labels[7], real.labels[30]]
    assert [loaded.sources(i) for i in range(2)] == [[real.ids[7]], [real.ids[30]]]
    assert loaded.paths[0] == tmp_path / "set" / "images" / real.class_names[real.labels[7]] / "r007-0.png"

    everything = load_synthetic_set(tmp_path / "set", class_names=real.class_names, kept_only=False)
    assert everything.ids == ["r002-0", "r007-0", "r030-0"]
    assert everything.subset([2]).sources(0) == [real.ids[30]]


def test_labels_follow_the_given_class_order_not_the_records(tmp_path, real):
    write_recoloured_set(tmp_path / "set", real, rows=[0, 49])  # a "zero" and a "nine"
    reversed_names = list(reversed(real.class_names))
    loaded = load_synthetic_set(tmp_path / "set", class_names=reversed_names)
    assert [reversed_names[label] for label in loaded.labels] == [real.class_names[real.labels[r]] for r in (0, 49)]
    own = load_synthetic_set(tmp_path / "set")  # without class names: the set's classes by their labels
    assert own.class_names == [real.class_names[real.labels[0]], real.class_names[real.labels[49]]]
    assert own.labels.tolist() == [0, 1]


def test_a_class_the_real_set_lacks_is_an_error_naming_the_class_and_the_set(tmp_path, real):
    write_recoloured_set(tmp_path / "set", real, rows=[0, 49])
    with pytest.raises(DatasetError, match=r"(?s)set.*class\(es\) \['nine'\].*lacks") as error:
        load_synthetic_set(tmp_path / "set", class_names=real.class_names[:9])
    assert str(tmp_path / "set") in str(error.value)


def test_a_missing_or_corrupt_image_is_an_error_naming_the_file(tmp_path, real):
    records = write_recoloured_set(tmp_path / "set", real, rows=[0, 1, 2])
    missing = tmp_path / "set" / records[0].path
    missing.unlink()
    corrupt = tmp_path / "set" / records[2].path
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    with pytest.raises(DatasetError, match="2 image") as error:
        load_synthetic_set(tmp_path / "set", class_names=real.class_names)
    assert str(missing) in str(error.value) and str(corrupt) in str(error.value)
    assert records[1].path not in str(error.value)
    with pytest.raises(DatasetError, match="not found"):
        load_synthetic_set(tmp_path / "nowhere")


def test_synthetic_images_of_another_size_meet_the_transforms_at_the_recipe_size(tmp_path, real):
    write_recoloured_set(tmp_path / "large", real, rows=[3, 4], size=40)
    write_recoloured_set(tmp_path / "same", real, rows=[3, 4])
    config = pocket_config()
    assert config.augmentation.image_size == 16

    large = load_synthetic_set(tmp_path / "large", class_names=real.class_names)
    pool = build_train_pool(real, large, config, torch.device("cpu"))
    assert pool.images.shape == (len(real) + 2, 3, 16, 16)
    files = [np.asarray(Image.open(path).convert("RGB")) for path in large.paths]
    assert files[0].shape == (40, 40, 3)
    expected = resize_uint8(torch.from_numpy(np.stack(files)).permute(0, 3, 1, 2), 16)
    assert (pool.images[len(real) :].int() - expected.int()).abs().max() <= 1  # Pillow vs torch rounding

    same = load_synthetic_set(tmp_path / "same", class_names=real.class_names)
    pool = build_train_pool(real, same, config, torch.device("cpu"))
    recoloured_real = torch.from_numpy(np.stack([recoloured(real.images[r], 0) for r in (3, 4)])).permute(0, 3, 1, 2)
    assert torch.equal(pool.images[len(real) :], recoloured_real)  # the recipe's size: pixels untouched


def test_each_synthetic_sample_points_to_the_real_image_it_was_made_from(tmp_path, real):
    with SetWriter(tmp_path / "set") as writer:
        sources = {
            "a-edit": [real.ids[4]],
            "b-mix": ["a-edit", real.ids[9]],  # a mix of an edit and a real image: the real one counts
            "c-txt2img": [],
            "d-other-split": ["pocket/9999"],  # made from an image outside this training split
        }
        for item_id, source_ids in sources.items():
            record = SampleRecord(
                id=item_id, path=writer.image_path(item_id, "zero"), label=0, class_name="zero",
                method="recolour", source_ids=source_ids,
            )  # fmt: skip
            writer.add(record, real.images[0])
    synthetic = load_synthetic_set(tmp_path / "set", class_names=real.class_names)
    pool = build_train_pool(real, synthetic, pocket_config(), torch.device("cpu"))
    assert pool.source.tolist() == [4, 9, -1, -1]
    assert pool.num_real == len(real) and pool.num_synthetic == 4


def test_several_sets_train_as_one_with_their_sources(tmp_path, real):
    write_recoloured_set(tmp_path / "a", real, rows=[1, 2])
    with SetWriter(tmp_path / "b") as writer:
        record = SampleRecord(id="mix-1", path=writer.image_path("mix-1", "zero"), label=0, class_name="zero",
                              method="fractal", source_ids=[real.ids[3], "r001-0"])  # fmt: skip
        writer.add(record, real.images[0])
    a = load_synthetic_set(tmp_path / "a", class_names=real.class_names)
    b = load_synthetic_set(tmp_path / "b", class_names=real.class_names)
    both = concat_synthetic_sets([a, b])
    assert both.ids == ["r001-0", "r002-0", "mix-1"] and both.paths == a.paths + b.paths
    assert both.labels.tolist() == [*a.labels, 0]
    assert [both.sources(i) for i in range(3)] == [[real.ids[1]], [real.ids[2]], [real.ids[3], "r001-0"]]
    with pytest.raises(DatasetError, match=r"ids \['r001-0', 'r002-0'\] appear in more than one"):
        concat_synthetic_sets([a, a])
    with pytest.raises(DatasetError, match="class_names"):
        concat_synthetic_sets([a, load_synthetic_set(tmp_path / "b")])
