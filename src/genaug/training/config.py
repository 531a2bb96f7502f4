"""The configs of classifier training: :class:`TrainConfig` (one run's recipe and settings),
:class:`AugmentationConfig`, :class:`TrainLoggingConfig` and :class:`TrainRunConfig`
(``genaug train CONFIG``).

Every recipe field defaults to None = "take the value of the preset named by ``recipe``";
:func:`genaug.training.resolve_recipe` fills them in, and the fully resolved config is what
a run writes beside itself (config.yaml). Names (``loss``, ``lr_schedule``,
``data_policy``, ``mixer``) and their keyword arguments are checked by the registries
that own them (:mod:`genaug.training.registry`, :mod:`genaug.mixing.registry`) without
importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genaug.config import ConfigError, Problem, StrictModel, did_you_mean
from genaug.data.config import DatasetConfig
from genaug.mixing.registry import MIXERS
from genaug.training.recipes import RECIPES
from genaug.training.registry import LOSSES, LR_SCHEDULES, POLICIES

__all__ = ["AugmentationConfig", "TrainLoggingConfig", "TrainConfig", "TrainRunConfig"]


Triple = tuple[float, float, float]


class AugmentationConfig(StrictModel):
    """The train-time input pipeline (docs/methods/training-recipes.md / 1.2), applied batched on tensors.

    Images are packed once at ``image_size`` x ``image_size`` (resized if they differ);
    training takes a random ``crop`` after ``padding`` on every side (``padding_mode`` as
    torchvision's: ``constant`` zeros, ``edge`` or ``reflect``), a random
    ``rotation`` in [-rotation, rotation] degrees before cropping and a random horizontal
    ``flip``; evaluation takes the centre ``crop``. Then ``(x / 255 - mean) / std``.
    """

    image_size: int | None = None
    crop: int | None = None
    padding: int | None = None
    padding_mode: Literal["constant", "edge", "reflect"] | None = None
    flip: bool | None = None
    rotation: float | None = None
    mean: Triple | None = None
    std: Triple | None = None

    @model_validator(mode="after")
    def _check(self) -> "AugmentationConfig":
        for name in ("image_size", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.padding is not None and self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.rotation is not None and not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.image_size is not None and self.crop is not None and self.padding is not None:
            if self.crop > self.image_size + 2 * self.padding:
                raise ValueError(
                    f"crop {self.crop} does not fit in image_size {self.image_size} + 2 * padding {self.padding}"
                )
        return self


class TrainLoggingConfig(StrictModel):
    """Where per-epoch metrics go: metrics.csv always, TensorBoard (``tb/``) and wandb optional."""

    tensorboard: bool = True
    wandb: Literal["off", "online", "offline"] = "off"
    wandb_project: str = "genaug"
    progress: bool = True


class TrainConfig(StrictModel):
    """One classifier training run (``genaug.training.train``): a recipe preset plus overrides.

    ``recipe`` names a preset (``cifar``: docs/methods/training-recipes.md; ``finegrained``: 1.2; ``pocket``:
    the 16x16 pocket digits); every field from ``model`` to ``augmentation`` left at None
    takes the preset's value, any value given wins, field by field.
    ``lr_schedule``: ``step`` (linear warm-up over ``warmup_epochs`` from ``warmup_factor``,
    then x ``lr_decay`` at each of ``milestones``) or ``cosine`` (to 0 over ``epochs``);
    stepped once per epoch. ``loss``: ``ce`` or ``bce_softmax`` (the reference's).

    ``batch_size`` is the GLOBAL batch: with several processes each one takes
    ``batch_size / world_size`` samples of every batch, so a recipe means the same thing
    on 1 or 8 devices (the CIFAR recipe's 128 is one GPU's batch; the SDI recipe's "128
    per device" is reproduced by setting ``batch_size = 128 * devices``).

    Run settings (not in presets, except ``cpu_threads`` = 1 for ``pocket``): validation
    every ``eval_every`` epochs (None: every epoch, or with ``fast`` every 5th epoch and every
    epoch of the last quarter of training; always after the last epoch and after every epoch
    of the last 10 %, the convergence check's points); ``report_reference`` also tests every epoch for the
    reference-style best / median-of-last-10 test top-1; ``precision`` fp32, bf16
    (autocast, CPU or CUDA) or fp16 (CUDA, with gradient scaling); ``channels_last``;
    ``device``; ``cpu_threads`` (None = torch's default); ``seed`` (every epoch's
    randomness derives from it and the epoch); ``mixer`` + ``mixer_kwargs``
    (``genaug.mixing.online``, ``none`` = plain forward; the trainer supplies what YAML
    cannot hold: ``puzzlemix`` and ``fractal`` get ``augmentation.mean``/``std``, and
    ``fractal`` its bank from ``mixer_kwargs.bank``, the fields of
    :class:`FractalBankConfig`: ``count``, ``size``, ``seed`` or ``folder``);
    ``data_policy`` + ``data_policy_kwargs`` (``genaug.training.policies``, docs/methods/progressive-scheduling.md):

    - ``real_only``, ``concat``: no kwargs;
    - ``subset``: ``labels_per_class`` (None = each class's real count), ``seed`` (0);
    - ``curriculum``: ``schedule`` (linear, step, warmup, cosine, constant) and that
      schedule's parameters (``milestones``/``values``, ``warmup_epochs``, ``p``);
    - ``synthetic_probability``: ``p`` (0.5);
    - ``multiples``: ``multiples`` (1.0), ``seed`` (0).

    ``steps``: train for exactly this many optimizer steps instead of ``epochs`` epochs (None:
    epochs decide). Epochs then run as usual, each planned by its data policy, and the one
    during which the budget is reached is cut there, whatever the data size; ``epochs`` (E)
    still defines the schedules' time axis: after s of N steps the run is at the fractional
    epoch ``e = s / N * E``. The LR schedule's epoch formula is evaluated at e and stepped after
    every optimizer step (cosine reaches its end, 0, exactly after step N; the ``step``
    schedule's warm-up and milestones keep their place in the fraction of training), and a
    curriculum's rho(t) sees the e at which each epoch starts. Compute-matched comparisons
    give every arm the same ``steps``.

    ``fast`` (default true): the trainer's fast path, which trains the same recipe with less
    fixed cost per run: validation as above and in batches of 4 training batches
    (at most 2^18 pixels), the best-validation weights kept in memory and written
    with each checkpoint, checkpoints timed (below), SGD's fused update.
    A run is still a function of its config (rerunning gives identical results) but not
    bit-identical to a run with ``fast: false``, which keeps the former per-run costs
    (validation every epoch in batches of ``batch_size``, every improvement written at once,
    a checkpoint every epoch, SGD's per-tensor loop), for comparisons
    (``benchmarks/training_runs.py``). ``stack_seeds`` (fast path only): when several seeds of
    one run train together (an experiment's arm, :func:`genaug.training.train_seeds`), up to
    this many train as one stacked model, each seed with its own data order, augmentation,
    weights, checkpoint and files (:mod:`genaug.training.stacked`); 1 trains each alone. A
    stacked seed is a function of its seed and of how many seeds were stacked, not bit-equal
    to the seed alone; the field does not enter an experiment's run keys, and a resumed run
    may change it.

    ``logging``; ``checkpoint_every`` epochs (and always after the last; None: every epoch,
    or with ``fast`` the first epoch ending 30 s or more after the last checkpoint, so a
    killed run loses at most about 30 s). ``keep_checkpoint``:
    keep the last checkpoint (weights, optimiser state) of a finished run; ``false`` keeps only
    the selected weights (``best.safetensors``) once ``metrics.json`` is written (the default
    in experiments, where it does not enter the run's key).
    """

    recipe: str = "cifar"
    model: str | None = None
    width: float | None = None
    epochs: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    lr_schedule: str | None = None
    warmup_epochs: int | None = None
    warmup_factor: float | None = None
    milestones: list[int] | None = None
    lr_decay: float | None = None
    loss: str | None = None
    augmentation: AugmentationConfig = AugmentationConfig()

    eval_every: int | None = None
    report_reference: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int | None = None
    seed: int = 0
    mixer: str = "none"
    mixer_kwargs: dict[str, Any] = {}
    data_policy: str = "real_only"
    data_policy_kwargs: dict[str, Any] = {}
    logging: TrainLoggingConfig = TrainLoggingConfig()
    checkpoint_every: int | None = None
    fast: bool = True
    stack_seeds: int = 8
    keep_checkpoint: bool = True

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        positive = ("epochs", "steps", "batch_size", "eval_every", "checkpoint_every", "cpu_threads", "stack_seeds")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.width is not None and self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("momentum", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.warmup_factor is not None and not 0.0 < self.warmup_factor <= 1.0:
            raise ValueError(f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        if self.milestones is not None and sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        self._check_names()
        return self

    def _check_names(self) -> None:
        """Names and keyword arguments against the registries that own them (no torch needed)."""
        if self.recipe not in RECIPES:
            raise ValueError(
                f"recipe: unknown recipe '{self.recipe}'{did_you_mean(self.recipe, RECIPES)} (allowed: {', '.join(RECIPES)})"
            )
        if self.loss is not None:
            LOSSES.spec(self.loss, key="loss")
        if self.lr_schedule is not None:
            LR_SCHEDULES.spec(self.lr_schedule, key="lr_schedule")
        POLICIES.validate(self.data_policy, self.data_policy_kwargs, key="data_policy", kwargs_key="data_policy_kwargs")
        mixer = MIXERS.spec(self.mixer, key="mixer")
        if mixer.metadata.get("needs_normalisation"):
            given = sorted({"mean", "std"} & set(self.mixer_kwargs))
            if given:
                message = (
                    f"{given} of '{self.mixer}' come from augmentation.mean/std "
                    "(the normalisation of the batches it mixes); remove them from mixer_kwargs"
                )
                raise ConfigError(f"mixer_kwargs: {message}", [Problem(("mixer_kwargs",), message)])
        MIXERS.validate(self.mixer, self.mixer_kwargs, key="mixer", kwargs_key="mixer_kwargs")



class TrainRunConfig(StrictModel):
    """``genaug train CONFIG``: one classifier run on a real dataset, optionally with synthetic sets.

    ``synthetic``: set folders (manifest.jsonl + images) whose kept records join the
    training pool, used as ``train.data_policy`` says.
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    synthetic: list[Path] = Field(default_factory=list)
    output: Path


def train_help() -> str:
    """The recipes (what each sets) and the fields of ``genaug train``, for its ``--help``."""
    def fields(model) -> str:
        return ", ".join(model.model_fields)

    paragraphs = ["Recipes (train.recipe; any field given wins over the recipe's value):"]
    for name, preset in RECIPES.items():
        size = preset["augmentation"]["image_size"]
        paragraphs.append(
            f"  {name}: {preset['model']}, {preset['epochs']} epochs, batch {preset['batch_size']}, "
            f"lr {preset['lr']} ({preset['lr_schedule']}), images at {size} x {size} px"
        )
    paragraphs += [
        f"Keys: {fields(TrainRunConfig)}.",
        f"train.<field>: {fields(TrainConfig)}.",
        f"train.augmentation.<field>: {fields(AugmentationConfig)}.",
        f"dataset.<field>: {fields(DatasetConfig)}.",
        "Example: genaug train output=runs/mine dataset.name=folder dataset.root=photos dataset.image_size=64 "
        "train.recipe=pocket train.augmentation.image_size=64 train.augmentation.crop=64",
    ]
    return "\n\n".join(paragraphs)
