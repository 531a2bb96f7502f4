"""The offline mix methods of the ``mix`` stage (docs/methods/diffusemix.md), each registered in
:data:`genaug.mixing.registry.MIX_METHODS` beside its params model.

A method is ``mixer(batch, config, resources) -> Mixed``: a batch of (original, resized edit)
pairs (:class:`genaug.mixing.stage.MixBatch`, uint8 (N, 3, H, W)), the stage's config and
what the stage loaded once for the methods that declared it (``resources``: the fractal
bank, the SHB CLIP); it returns the mixed uint8 batch with each item's params and extra
files. Its block in a ``mix`` stage (``fractal: {alpha: 0.3}``) is checked against its
params model when the config is loaded; ``fields`` maps the block's keys to the MixConfig
fields they set. The functions import the torch code they call, so this module, and a
config naming a method, need no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from genaug.config import StrictModel
from genaug.data.names import class_prompt
from genaug.mixing.config import ShbConfig
from genaug.mixing.registry import MIX_METHODS

if TYPE_CHECKING:
    import numpy as np
    import torch

    from genaug.config import MixConfig
    from genaug.mixing.stage import MixBatch, Mixed, MixResources


class ConcatParams(StrictModel):
    """``concat``: the feathered band in pixels (the stage's ``band``)."""

    band: int = Field(default=20, ge=0)


@MIX_METHODS.register("concat", params=ConcatParams, fields={"band": "band"})
def concat_mixer(batch: "MixBatch", config: "MixConfig", resources: "MixResources | None" = None) -> "Mixed":
    """Feathered halves; orientation horizontal or vertical with probability 1/2 per item."""
    from genaug.mixing.concat import feathered_halves, random_orientation
    from genaug.mixing.stage import Mixed

    orientations = [random_orientation(rng) for rng in batch.rngs]
    mixed = feathered_halves(batch.originals, batch.generated, orientations, band=config.band)
    return Mixed(mixed, [{"orientation": o, "band": config.band} for o in orientations])


class RectParams(StrictModel):
    """``rect``: the area share of the edit's rectangles (the stage's ``rect_ratio``)."""

    ratio: float = Field(default=0.5, gt=0.0, le=1.0)


@MIX_METHODS.register("rect", params=RectParams, fields={"ratio": "rect_ratio"})
def rect_mixer(batch: "MixBatch", config: "MixConfig", resources: "MixResources | None" = None) -> "Mixed":
    """Random rectangles of the edit on the original; the realised coverage is recorded."""
    import torch

    from genaug.mixing.concat import mask_coverage, random_rect_mask, rect_mix
    from genaug.mixing.stage import Mixed

    h, w = batch.originals.shape[-2:]
    masks = torch.stack([random_rect_mask(h, w, config.rect_ratio, rng) for rng in batch.rngs])
    coverage = mask_coverage(masks)
    mixed = rect_mix(batch.originals, batch.generated, masks)
    return Mixed(mixed, [{"ratio": config.rect_ratio, "coverage": round(float(c), 6)} for c in coverage])


class FractalParams(StrictModel):
    """``fractal``: blend weight and what the fractal is blended into (``fractal_alpha``, ``fractal_on``)."""

    alpha: float = Field(default=0.2, ge=0.0, le=1.0)
    on: Literal["concat", "generated"] = "concat"


@MIX_METHODS.register(
    "fractal", params=FractalParams, fields={"alpha": "fractal_alpha", "on": "fractal_on"}, resources=("bank",)
)
def fractal_mixer(batch: "MixBatch", config: "MixConfig", resources: "MixResources") -> "Mixed":
    """A fractal drawn uniformly from the bank, blended with alpha into the concatenation (or the edit)."""
    from genaug.mixing.fractals import fractal_bank_name, fractal_blend
    from genaug.mixing.stage import Mixed

    bank = resources.bank
    params: list[dict[str, Any]] = [{} for _ in batch.rngs]
    if config.fractal_on == "concat":
        concat = concat_mixer(batch, config)
        base = concat.images
        for p, c in zip(params, concat.params):
            p.update(c)
    else:
        base = batch.generated
    indices = [int(rng.integers(len(bank))) for rng in batch.rngs]
    mixed = fractal_blend(base, bank[indices], alpha=config.fractal_alpha)
    for p, index in zip(params, indices):
        p.update({"on": config.fractal_on, "alpha": config.fractal_alpha, "fractal_index": index, "fractal_bank": fractal_bank_name(config.fractals)})
    return Mixed(mixed, params)


@MIX_METHODS.register("shb", params=ShbConfig, resources=("clip",))
def shb_mixer(batch: "MixBatch", config: "MixConfig", resources: "MixResources") -> "Mixed":
    """Semantic hybrid blending of the batch, all patches of all pairs through CLIP together.

    Deterministic (no randomness). Params: the realised replaced fraction, the patch grid
    actually used, the mask parameters, the CLIP and prompt, the patches per CLIP call
    (``clip_batch_size``, after any out-of-memory halving); with ``heatmaps`` the
    similarity map as a grey PNG, its path under ``heatmap``.
    """
    from genaug.mixing.shb import semantic_hybrid_blend
    from genaug.mixing.stage import Mixed

    shb = config.shb
    result = semantic_hybrid_blend(
        batch.originals, batch.generated, batch.class_names, resources.clip,
        patch=shb.patch, stride=shb.stride, percentile=shb.percentile, sigma=shb.sigma, mode=shb.mode,
        prompt=shb.prompt, batch_size=shb.clip_batch_size, return_heatmaps=shb.heatmaps,
    )
    params, files = [], []
    for i, (item_id, class_name) in enumerate(zip(batch.ids, batch.class_names)):
        item = {
            "replaced_fraction": round(float(result.replaced_fraction[i]), 6),
            "patch": result.patch, "stride": result.stride, "percentile": shb.percentile,
            "sigma": shb.sigma, "mode": shb.mode, "prompt": class_prompt(shb.prompt, class_name),
            "clip": resources.clip_identity, "size": int(batch.originals.shape[-1]),
        }
        if result.clip_batch_size is not None:
            item["clip_batch_size"] = result.clip_batch_size
        extra = {}
        if result.heatmaps is not None:
            item["heatmap"] = f"heatmaps/{item_id}.png"
            extra[item["heatmap"]] = heatmap_png(result.heatmaps[i])
        params.append(item)
        files.append(extra)
    return Mixed(result.images, params, files)


def heatmap_png(heatmap: "torch.Tensor") -> "np.ndarray":
    """A similarity map in [0, 1] as a grey uint8 image (255 = most like the class)."""
    import torch

    return (heatmap.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
