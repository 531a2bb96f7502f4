"""Training input pipeline: genaug's packed tensors + batched augmentation vs ImageFolder + PIL.

Both sides deliver the same thing, epoch after epoch: shuffled batches of 128 normalised
float images (RandomCrop(32, padding=2), RandomHorizontalFlip, ToTensor, Normalize with
the CIFAR recipe's statistics) with their labels, from the same tree of 32x32 PNGs.

- torchvision: ``ImageFolder`` + PIL transforms through a ``DataLoader`` with 0 and with 2
  worker processes (persistent, so worker start-up is not counted);
- genaug: the tree packed once into a uint8 tensor (``pack_images``; its one-off cost is
  printed separately), then ``InputPipeline`` batches (index gather, one-gather crop+flip,
  normalise), with torch's default thread count and with one thread.

The PNGs are pocket digits re-rendered at 32x32 with random colours (10 classes). Each
contender runs ``--rounds`` full epochs, interleaved round by round so that load from
other processes hits all of them alike; the median epoch is reported.

    .venv/bin/python benchmarks/input_pipeline.py [--images 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BATCH = 128


def write_png_tree(root: Path, count: int, seed: int = 0) -> tuple[list[Path], np.ndarray, list[str]]:
    """``count`` 32x32 PNGs as ``root/<class>/<i>.png``; returns paths, labels, class names."""
    from genaug.pocket.render import DIGIT_NAMES, load_digits, render, sample_styles

    rng = np.random.default_rng(seed)
    source = load_digits()
    picks = rng.integers(0, len(source.labels), count)
    fg, bg = sample_styles(count, rng)
    images = render(source.images[picks], fg, bg)
    labels = source.labels[picks]
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / DIGIT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.png"
        Image.fromarray(image).resize((32, 32), Image.BILINEAR).save(path)
        paths.append(path)
    return paths, labels, list(DIGIT_NAMES)


def torchvision_epoch(root: Path, workers: int) -> Callable[[], int]:
    """One epoch of ImageFolder + PIL transforms through a DataLoader; returns samples seen."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from genaug.training.recipes import CIFAR_MEAN, CIFAR_STD

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=2),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0)

    def epoch() -> int:
        seen = 0
        for images, labels in loader:
            seen += len(labels)
        return seen

    epoch()  # warm-up: starts the workers, fills the page cache
    return epoch


def genaug_epoch(paths: list[Path], labels: np.ndarray, class_names: list[str]) -> tuple[Callable[[], int], float]:
    """One epoch of the packed pipeline; also returns the one-off packing time in seconds."""
    from genaug.config import AugmentationConfig
    from genaug.data.base import RealDataset
    from genaug.data.packed import pack_images
    from genaug.training.pipeline import InputPipeline, epoch_batches
    from genaug.training.recipes import CIFAR_MEAN, CIFAR_STD

    dataset = RealDataset(
        name="bench", split="train", class_names=class_names, labels=labels, ids=[p.stem for p in paths], paths=paths
    )
    started = time.perf_counter()
    packed = pack_images(dataset, 32)
    pack_seconds = time.perf_counter() - started
    targets = torch.as_tensor(labels)
    spec = AugmentationConfig(
        image_size=32, crop=32, padding=2, padding_mode="constant", flip=True, rotation=0.0,
        mean=CIFAR_MEAN, std=CIFAR_STD,
    )
    pipeline = InputPipeline(spec)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> int:
        order = torch.randperm(len(packed), generator=generator)
        params = pipeline.draw(len(order), generator)
        seen = 0
        for batch in epoch_batches(len(order), BATCH):
            indices = order[batch]
            images = pipeline.train(packed[indices], params[batch])
            seen += len(targets[indices])
        return seen

    epoch()
    return epoch, pack_seconds


def with_threads(threads: int, epoch: Callable[[], int]) -> Callable[[], int]:
    def run() -> int:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return epoch()
        finally:
            torch.set_num_threads(before)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ.setdefault("GENAUG_HOME", str(Path(tmp) / "home"))  # the packed cache goes in the temp dir
        root = Path(tmp) / "pngs"
        started = time.perf_counter()
        paths, labels, class_names = write_png_tree(root, args.images)
        seconds = time.perf_counter() - started
        threads = torch.get_num_threads()
        print(f"wrote {len(paths)} 32x32 PNGs in {seconds:.1f} s; batch {BATCH}; torch threads {threads}")

        genaug, pack_seconds = genaug_epoch(paths, labels, class_names)
        default_threads = torch.get_num_threads()
        contenders = {
            "torchvision ImageFolder+PIL, DataLoader num_workers=0": torchvision_epoch(root, 0),
            "torchvision ImageFolder+PIL, DataLoader num_workers=2": torchvision_epoch(root, 2),
            f"genaug packed + batched ({default_threads} threads)": with_threads(default_threads, genaug),
            "genaug packed + batched (1 thread)": with_threads(1, genaug),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, epoch in contenders.items():
                started = time.perf_counter()
                seen = epoch()
                times[name].append(time.perf_counter() - started)
                assert seen == len(paths), (name, seen)

    rates = {name: len(paths) / statistics.median(values) for name, values in times.items()}
    width = max(len(name) for name in rates)
    print(f"\nsamples/second (median of {args.rounds} epochs of {len(paths)} images):")
    for name, rate in rates.items():
        print(f"  {name:<{width}}  {rate:>10,.0f}")
    pack_rate = len(paths) / pack_seconds
    print(f"  (genaug's one-off packing of the PNG tree: {pack_seconds:.2f} s = {pack_rate:,.0f} images/s)")
    names = list(rates)
    for genaug_name in names[2:]:
        for baseline in names[:2]:
            print(f"ratio {genaug_name} / {baseline}: {rates[genaug_name] / rates[baseline]:.1f}x")


if __name__ == "__main__":
    main()
