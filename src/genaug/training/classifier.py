"""A trained classifier as a judge of synthetic images (the classifier-confidence filter).

``load_classifier(run_dir)`` rebuilds a run's classifier from what ``genaug train`` wrote:
``config.yaml`` (the resolved recipe: architecture, width, input pipeline),
``best.safetensors`` (the selected weights) and ``metrics.json`` (class names). Images are
resized to the run's ``image_size`` and go through its evaluation transform (centre crop,
normalisation), exactly as its test set did.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from PIL import Image

from genaug.training.config import TrainConfig


@dataclass
class Classifier:
    """A classifier with its evaluation transform and its class names."""

    model: torch.nn.Module
    pipeline: object  # genaug.training.pipeline.InputPipeline
    class_names: list[str]
    image_size: int
    device: torch.device

    @torch.no_grad()
    def probabilities(self, images: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Softmax class probabilities ``(N, K)`` of uint8 (H, W, 3) images."""
        self.model.eval()
        out = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([_resize(image, self.image_size) for image in images[start : start + batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            logits = self.model(self.pipeline.eval(x))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), dtype=np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(image)
    if array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def load_classifier(run_dir: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The classifier of a finished ``genaug train`` run (see the module doc)."""
    from genaug.checkpoint import BEST_FILE, load_weights
    from genaug.models import create_model
    from genaug.training.pipeline import InputPipeline
    from genaug.training.trainer import CONFIG_FILE, RESULT_FILE

    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, BEST_FILE, RESULT_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished training run: {name} is missing")
    config = TrainConfig.model_validate(yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")))
    class_names = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))["class_names"]
    model = create_model(config.model, len(class_names), width=config.width)
    model.load_state_dict(load_weights(run_dir / BEST_FILE))
    device = torch.device(device)
    return Classifier(
        model=model.to(device).eval(),
        pipeline=InputPipeline(config.augmentation, device),
        class_names=list(class_names),
        image_size=int(config.augmentation.image_size),
        device=device,
    )


def classifier_identity(run_dir: str | Path) -> dict | None:
    """``{"run": <folder>, "sha256": <of its best.safetensors and config.yaml>}``: what a classifier's
    scores depend on (None when the run is not finished)."""
    from genaug.training.checkpoint import BEST_FILE
    from genaug.training.trainer import CONFIG_FILE

    run_dir = Path(run_dir)
    digest = hashlib.sha256()
    for name in (BEST_FILE, CONFIG_FILE):
        if not (run_dir / name).is_file():
            return None
        digest.update((run_dir / name).read_bytes())
    return {"run": str(run_dir.resolve()), "sha256": digest.hexdigest()}
