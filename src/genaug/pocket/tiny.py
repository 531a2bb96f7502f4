"""Randomly initialised pocket models, assembled in seconds, for tests and benchmarks.

They are built by the pocket model factories and written by the pocket export code, so
every folder has the shipped layout and loads through the same code paths as the trained
models (a ``CLIPModel`` folder with its processor and OpenAI-format vocabulary,
``StableDiffusionPipeline`` and ``StableDiffusionInstructPix2PixPipeline`` folders); only
the weights are random. Use them to test plumbing, never quality.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from genaug.pocket import models as pm
from genaug.pocket.tokenizer import EOS, MODEL_MAX_LENGTH, pocket_corpus, write_tokenizer_files

#: The models of the pocket world, in the order they depend on each other.
POCKET_MODELS = ("clip", "sd", "ip2p")
#: Stable Diffusion 1.x's prompt length in tokens (OpenAI CLIP's context length).
SD_MAX_LENGTH = 77

#: Sizes that build in a second. CLIP is 32 wide throughout, so its image embeddings, its text
#: context and SD's cross-attention share one width, as the SDI tests' projectors assume.
TINY_CLIP = {
    "vision": {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "projection_dim": 32,
}
TINY_VAE = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4}
TINY_UNET = {"block_out_channels": [16, 32], "attention": [True, True], "layers_per_block": 1, "attention_head_dim": 2, "norm_num_groups": 8}


def make_tiny_pocket(
    out_dir: str | Path,
    seed: int = 0,
    *,
    models: Iterable[str] = POCKET_MODELS,
    sizes: str = "tiny",
    extra_texts: Iterable[str] = (),
    model_max_length: int = MODEL_MAX_LENGTH,
) -> dict[str, Path]:
    """Write random ``out_dir/<model>`` folders for ``models``; return ``{"root": out_dir, <model>: folder}``.

    The options are those of :func:`write_tiny_models`.
    """
    out = Path(out_dir)
    folders = write_tiny_models(
        {name: out / name for name in models}, seed, sizes=sizes, extra_texts=extra_texts, model_max_length=model_max_length
    )
    return {"root": out, **folders}


def write_tiny_models(
    folders: Mapping[str, str | Path],
    seed: int = 0,
    *,
    sizes: str = "tiny",
    extra_texts: Iterable[str] = (),
    model_max_length: int = MODEL_MAX_LENGTH,
) -> dict[str, Path]:
    """Write random pocket models, each to its folder; ``folders`` maps ``clip``, ``sd``, ``ip2p`` to paths.

    ``sizes`` is ``"tiny"`` (``TINY_CLIP``, ``TINY_VAE``, ``TINY_UNET``: built in a second) or
    ``"pocket"`` (the shipped models' architecture, from the build spec, for timings that
    should mean something). The tokenizer is :func:`tiny_tokenizer` of ``extra_texts`` and
    ``model_max_length``; the text tower has as many positions.

    As in the shipped build, SD's text encoder is CLIP's text tower and InstructPix2Pix's UNet
    is SD's with 4 zero-initialised input channels. Every module is drawn from one stream
    seeded with ``seed``, in the same order whichever models are written, so folders written
    by separate calls with the same options fit together as if written by one. The caller's
    torch random state is left as it was.
    """
    from genaug.pocket.build import export_clip, export_ip2p, export_sd

    folders = {name: Path(folder) for name, folder in folders.items()}
    unknown = set(folders) - set(POCKET_MODELS)
    if unknown:
        raise ValueError(f"unknown pocket models {sorted(unknown)}; choose from {POCKET_MODELS}")
    arch = _architecture(sizes)
    extra_texts = tuple(extra_texts)
    with tempfile.TemporaryDirectory(prefix="genaug-tiny-tokenizer-") as tokenizer_dir:
        tokenizer = tiny_tokenizer(tokenizer_dir, extra_texts, model_max_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = pm.make_clip(arch["clip"], tokenizer)
        vae = pm.make_vae(arch["vae"])
        unet = pm.make_unet(arch["unet"], cross_attention_dim=clip.config.text_config.hidden_size)
        text_encoder = _text_tower(clip)
        ip2p_unet = pm.ip2p_unet_from_sd(unet)
    if "clip" in folders:
        export_clip(clip, tokenizer, folders["clip"], texts=pocket_corpus() + list(extra_texts))
    if "sd" in folders:
        export_sd(vae, text_encoder, tokenizer, unet, folders["sd"])
    if "ip2p" in folders:
        export_ip2p(vae, text_encoder, tokenizer, ip2p_unet, folders["ip2p"])
    return folders


def tiny_tokenizer(folder: str | Path, extra_texts: Iterable[str] = (), model_max_length: int = MODEL_MAX_LENGTH):
    """The pocket CLIP tokenizer with every word of ``extra_texts`` one token as well, as a real
    CLIP vocabulary has the words of common prompts; written to ``folder`` as ``vocab.json`` +
    ``merges.txt`` (OpenAI CLIP's format) and loaded back as SD loads its tokenizer (padding
    with the end token)."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder, pocket_corpus() + list(extra_texts))
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=model_max_length, pad_token=EOS)


def _architecture(sizes: str) -> dict[str, dict]:
    """The ``clip``, ``vae`` and ``unet`` architecture dictionaries of ``sizes``."""
    if sizes == "tiny":
        return {"clip": TINY_CLIP, "vae": TINY_VAE, "unet": TINY_UNET}
    if sizes == "pocket":
        from genaug.pocket.build import load_spec

        spec = load_spec()
        return {"clip": spec["clip"]["arch"], "vae": spec["vae"]["arch"], "unet": spec["sd"]["arch"]}
    raise ValueError(f"sizes must be 'tiny' or 'pocket', got {sizes!r}")


def _text_tower(clip):
    """A ``CLIPTextModel`` holding ``clip``'s text transformer (what SD's ``text_encoder`` folder is)."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder
