"""Stand-ins: randomly initialised models with the exact architectures of the hub models.

``genaug/rehearsal/hub/<org>--<name>/`` holds, for each hub model the shipped experiments
name, the hub repository's own configuration files (``model_index.json``, each
component's ``config.json``, scheduler and preprocessor configs) and no weights.
:func:`standin_dir` builds the model once into ``GENAUG_HOME/rehearsal/standins/``: every
component is made from its config with random weights, saved with ``save_pretrained``
(fp32 safetensors, as the hub's main branch holds them), its ``config.json`` replaced by the
hub's file, and the tokenizer written from CLIP's real BPE (:mod:`genaug.rehearsal.tokenizer`).
The folder then loads through the same ``from_pretrained`` calls as the hub model
(``StableDiffusionPipeline``, ``StableDiffusionInstructPix2PixPipeline``, ``AutoencoderKL``,
``CLIPModel`` + ``CLIPProcessor``). Shapes, dtypes, memory and FLOPs are the real models';
the images are noise. Use them to rehearse and to measure, never to judge quality.

SD 1.5's ``safety_checker`` (listed in its ``model_index.json``) has no stand-in: genaug
loads pipelines with ``safety_checker=None``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

import torch

from genaug.home import cache_dir
from genaug.rehearsal.tokenizer import clip_tokenizer

#: Hub id -> the folder of its configs under ``genaug/rehearsal/hub``.
STANDINS = {
    "runwayml/stable-diffusion-v1-5": "runwayml--stable-diffusion-v1-5",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "runwayml--stable-diffusion-v1-5",
    "stabilityai/sd-vae-ft-mse": "stabilityai--sd-vae-ft-mse",
    "timbrooks/instruct-pix2pix": "timbrooks--instruct-pix2pix",
    "openai/clip-vit-base-patch32": "openai--clip-vit-base-patch32",
    "openai/clip-vit-large-patch14": "openai--clip-vit-large-patch14",
}
#: Written last into a finished stand-in folder: its absence means "build again".
COMPLETE = ".genaug-standin.json"
#: Bumped when the way stand-ins are built changes (old folders are rebuilt).
BUILD_VERSION = 1


def hub_config_dir(hub_id: str) -> Path:
    """The shipped config folder of ``hub_id`` (ValueError naming the known ids otherwise)."""
    if hub_id not in STANDINS:
        raise ValueError(f"no stand-in for {hub_id!r}; stand-ins exist for: {', '.join(sorted(STANDINS))}")
    return Path(str(files("genaug.rehearsal") / "hub" / STANDINS[hub_id]))


def is_standin(reference: str) -> bool:
    return reference in STANDINS


def standin_dir(hub_id: str, seed: int = 0) -> Path:
    """The stand-in folder of ``hub_id``, built on first use (minutes for SD-sized models)."""
    template = hub_config_dir(hub_id)
    out = cache_dir("rehearsal", "standins") / f"{template.name}-seed{seed}"
    marker = out / COMPLETE
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("version") == BUILD_VERSION:
        return out
    with tempfile.TemporaryDirectory(prefix=f".{template.name}-", dir=out.parent) as tmp:
        staging = Path(tmp) / "model"
        build_standin(template, staging, seed)
        (staging / COMPLETE).write_text(json.dumps({"hub_id": hub_id, "seed": seed, "version": BUILD_VERSION}), encoding="utf-8")
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("version") == BUILD_VERSION:
            return out  # another process finished the same build meanwhile: keep its folder
        if out.exists():
            shutil.rmtree(out)  # an unfinished or outdated build
        staging.rename(out)
    return out


def build_standin(template: Path, out: Path, seed: int = 0) -> Path:
    """Write ``template``'s model with random weights to ``out`` (a pipeline or a single model)."""
    shutil.copytree(template, out)
    index = out / "model_index.json"
    components = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if components is None:
            _build_component(out)
        else:
            for name, value in components.items():
                if name.startswith("_") or not isinstance(value, list) or value[0] is None:
                    continue
                class_name = value[1]
                folder = out / name
                if class_name == "CLIPTokenizer":
                    _write_tokenizer(folder)
                elif folder.is_dir():
                    _build_component(folder)
    return out


def _build_component(folder: Path) -> None:
    """Random weights for the model whose config sits in ``folder`` (scheduler/processor folders: nothing)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return
    hub_config = config_path.read_text(encoding="utf-8")
    config = json.loads(hub_config)
    model = _random_model(folder, config)
    if model is None:
        return
    model.save_pretrained(str(folder), safe_serialization=True)
    del model
    # The hub's own file, byte for byte: what from_pretrained reads is then the hub's config.
    config_path.write_text(hub_config, encoding="utf-8")
    if config.get("architectures") == ["CLIPModel"]:
        _write_clip_processor(folder)


def _random_model(folder: Path, config: dict):
    import diffusers
    import transformers

    if "_class_name" in config:
        cls = getattr(diffusers, config["_class_name"])
        if not hasattr(cls, "from_config") or not issubclass(cls, diffusers.ModelMixin):
            return None
        return cls.from_config(cls.load_config(str(folder)))
    architecture = (config.get("architectures") or [None])[0]
    if architecture in ("CLIPModel", "CLIPTextModel"):
        model_config = transformers.AutoConfig.from_pretrained(str(folder))
        return getattr(transformers, architecture)(model_config)
    raise ValueError(f"{folder / 'config.json'}: no stand-in builder for {architecture or config.get('_class_name')!r}")


def _write_tokenizer(folder: Path) -> None:
    clip_tokenizer().save_pretrained(str(folder))


def _write_clip_processor(folder: Path) -> None:
    """CLIPProcessor files (tokenizer + the hub's preprocessor config) beside a CLIPModel."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    hub_preprocessor = (folder / "preprocessor_config.json").read_text(encoding="utf-8")
    image_processor = CLIPImageProcessor.from_pretrained(str(folder))
    CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(hub_preprocessor, encoding="utf-8")


def meta_model(hub_id: str, component: str | None = None):
    """The model of ``hub_id`` (``component``: ``unet``, ``vae``, ``text_encoder`` of a pipeline)
    on the meta device: the architecture without memory, for parameter and FLOP counts."""
    return meta_model_at(hub_config_dir(hub_id), component)


def meta_model_at(folder: str | Path, component: str | None = None):
    """The model whose ``config.json`` is in ``folder`` (or its ``component`` subfolder: a
    diffusers pipeline folder's ``unet``, ``vae``...) on the meta device: any local diffusers or
    CLIP folder, the pocket models' among them; only its config files are read."""
    folder = Path(folder) / component if component else Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such config file (cost estimates read the model's own config files)")
    config = json.loads(path.read_text(encoding="utf-8"))
    with torch.device("meta"):
        return _random_model(folder, config)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
