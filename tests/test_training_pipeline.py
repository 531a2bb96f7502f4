"""The packed input pipeline and the data policies of genaug.training."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from genaug.config import AugmentationConfig, ConfigError
from genaug.data.base import RealDataset
from genaug.training.pipeline import (
    InputPipeline,
    center_crop,
    crop_and_flip,
    draw_augment_params,
    epoch_batches,
    normalize,
    pack_dataset,
    rotate,
)
from genaug.training.policies import TrainPool, create_policy


def _images(n=24, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_batched_crop_and_flip_equal_torchvision_per_sample():
    images = _images()
    params = draw_augment_params(len(images), 32, 32, 2, True, 0.0, torch.Generator().manual_seed(1))
    assert params.flip.any() and not params.flip.all()
    batched = crop_and_flip(images, params.top, params.left, params.flip, crop=32, padding=2)
    for i in range(len(images)):
        expected = TF.crop(TF.pad(images[i], [2]), int(params.top[i]), int(params.left[i]), 32, 32)
        if params.flip[i]:
            expected = TF.hflip(expected)
        assert torch.equal(batched[i], expected), i


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_padding_modes_equal_torchvision(mode):
    images = _images(size=16)
    params = draw_augment_params(len(images), 16, 16, 3, False, 0.0, torch.Generator().manual_seed(4))
    batched = crop_and_flip(images, params.top, params.left, params.flip, crop=16, padding=3, padding_mode=mode)
    for i in range(len(images)):
        padded = TF.pad(images[i], [3], padding_mode=mode)
        assert torch.equal(batched[i], TF.crop(padded, int(params.top[i]), int(params.left[i]), 16, 16))


def test_crop_smaller_than_the_image_without_padding():
    images = _images(size=20)
    params = draw_augment_params(len(images), 20, 14, 0, True, 0.0, torch.Generator().manual_seed(2))
    batched = crop_and_flip(images, params.top, params.left, params.flip, crop=14, padding=0)
    for i in range(len(images)):
        expected = TF.crop(images[i], int(params.top[i]), int(params.left[i]), 14, 14)
        expected = TF.hflip(expected) if params.flip[i] else expected
        assert torch.equal(batched[i], expected)


def test_crop_offsets_cover_every_valid_position():
    params = draw_augment_params(4000, 32, 32, 2, False, 0.0, torch.Generator().manual_seed(3))
    assert set(params.top.tolist()) == set(range(5)) and set(params.left.tolist()) == set(range(5))
    assert not params.flip.any()


def test_batched_rotation_equals_torchvision_rotate():
    images = _images(size=24).float()
    angles = torch.tensor([-15.0, -7.5, 0.0, 3.0, 9.9, 15.0] * 4)
    rotated = rotate(images, angles)
    for i in range(len(images)):
        assert torch.equal(rotated[i], TF.rotate(images[i], float(angles[i]))), i


def test_centre_crop_and_normalise_equal_torchvision():
    images = _images(n=4, size=256)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pipeline = InputPipeline(AugmentationConfig(
            image_size=256, crop=224, padding=0, padding_mode="constant", flip=True, rotation=15.0, mean=mean, std=std
        ))
    out = pipeline.eval(images)
    for i in range(len(images)):
        expected = TF.normalize(TF.center_crop(images[i], [224, 224]).float() / 255, mean, std)
        torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-5)
    assert center_crop(images, 256) is images


def test_train_pipeline_is_a_pure_function_of_the_generator():
    images = _images()
    pipeline = InputPipeline(AugmentationConfig(
            image_size=32, crop=32, padding=2, padding_mode="constant", flip=True, rotation=10.0, mean=(0.5,) * 3,
            std=(0.25,) * 3,
        ))
    first = pipeline.train(images, pipeline.draw(len(images), torch.Generator().manual_seed(5)))
    second = pipeline.train(images, pipeline.draw(len(images), torch.Generator().manual_seed(5)))
    assert torch.equal(first, second) and first.dtype == torch.float32 and first.shape == (24, 3, 32, 32)
    # params drawn for a whole epoch, then sliced per batch, give the same batch as drawing alone
    params = pipeline.draw(len(images), torch.Generator().manual_seed(5))
    assert torch.equal(pipeline.train(images[8:16], params[8:16]), first[8:16])


def test_an_unresolved_augmentation_config_is_refused():
    with pytest.raises(ValueError, match="padding_mode"):
        unresolved = AugmentationConfig(image_size=32, crop=32, padding=2, flip=True, rotation=0.0, mean=(0.5,) * 3)
        InputPipeline(unresolved)


def test_normalize_matches_the_formula():
    images = _images(n=2)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(images, mean, std), (images.float() / 255 - mean) / std)


def test_epoch_batches_cover_every_position_once():
    batches = epoch_batches(10, 4)
    assert [(b.start, b.stop) for b in batches] == [(0, 4), (4, 8), (8, 10)]


def test_pack_dataset_is_nchw_and_resizes():
    array = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    dataset = RealDataset(name="t", split="train", class_names=["a"], labels=[0, 0, 0], ids=list("xyz"), images=array)
    packed = pack_dataset(dataset)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 3, 8, 8)
    assert torch.equal(packed[1].permute(1, 2, 0), torch.from_numpy(array[1]))
    assert pack_dataset(dataset, 16).shape == (3, 3, 16, 16)


def _pool(num_real=6, num_synthetic=4):
    n = num_real + num_synthetic
    return TrainPool(
        images=torch.zeros(n, 3, 2, 2, dtype=torch.uint8),
        labels=torch.arange(n) % 2,
        num_real=num_real,
        source=torch.full((num_synthetic,), -1),
    )


def test_real_only_shuffles_the_real_samples_and_counts_them():
    plan = create_policy("real_only").plan(0, 10, _pool(), torch.Generator().manual_seed(0))
    assert sorted(plan.indices.tolist()) == list(range(6))
    assert (plan.real, plan.synthetic) == (6, 0)


def test_concat_uses_real_and_synthetic_once_each():
    plan = create_policy("concat").plan(0, 10, _pool(), torch.Generator().manual_seed(0))
    assert sorted(plan.indices.tolist()) == list(range(10))
    assert (plan.real, plan.synthetic) == (6, 4)


def test_an_unknown_policy_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="data_policy: unknown data policy 'curriculumm'; did you mean 'curriculum'.*concat.*real_only"):
        create_policy("curriculumm")
