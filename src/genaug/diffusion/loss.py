"""The denoising loss of a frozen diffusion model on cached latents, and the seeded draws of one step.

Shared by SDI's projector training (:mod:`genaug.sdi.train`), textual inversion
(:mod:`genaug.generation.inversion`) and the Diff-Mix fine-tuning (:mod:`genaug.generation.lora`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genaug.diffusion.cache import LatentCache

__all__ = ["StepDraws", "cached_latents", "diffusion_loss", "draw_step"]


@dataclass
class StepDraws:
    """The randomness of one global batch: latent sample noise, embedding keep mask,
    timesteps and diffusion noise, one row per sample.

    Drawn whole on every process from ``(seed, step)`` and then sliced, so a sample's
    randomness does not depend on how many processes share the batch.
    """

    latent_eps: torch.Tensor
    keep: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> "StepDraws":
        return StepDraws(self.latent_eps[index], self.keep[index], self.timesteps[index], self.noise[index])


def draw_step(n: int, latent_shape: tuple[int, ...], num_timesteps: int, dropout: float, generator: torch.Generator) -> StepDraws:
    """``eps ~ N(0, I)``, ``keep ~ Bernoulli(1 - dropout)``, ``t ~ U{0..T-1}``, ``noise ~ N(0, I)`` for ``n`` samples."""
    latent_eps = torch.randn((n, *latent_shape), generator=generator)
    keep = torch.rand(n, generator=generator) >= dropout
    timesteps = torch.randint(0, num_timesteps, (n,), generator=generator)
    noise = torch.randn((n, *latent_shape), generator=generator)
    return StepDraws(latent_eps, keep, timesteps, noise)


def diffusion_loss(unet, noise_scheduler, latents: torch.Tensor, context: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor) -> torch.Tensor:
    """``mean || target - unet(z_t, t, c) ||^2`` with ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise``
    (the scheduler's ``add_noise``); the target is ``noise`` (epsilon prediction, SD 1.x) or
    the velocity for v-prediction models."""
    noise = noise.to(latents.device, latents.dtype)
    timesteps = timesteps.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, encoder_hidden_states=context.to(noisy.dtype)).sample
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"projector training supports epsilon and v_prediction models, not {kind!r}")
    return F.mse_loss(prediction.float(), target.float())


def cached_latents(latents: LatentCache, rows: torch.Tensor, draws: StepDraws, scaling_factor: float,
                   sample: bool = True) -> torch.Tensor:
    """``z0 = s (mean + std eps)`` of the cached images ``rows`` (``s mean`` when not ``sample``)."""
    mean, std = latents.mean[rows], latents.std[rows]
    z0 = (mean + std * draws.latent_eps.to(mean.device, mean.dtype)) if sample else mean
    return z0 * scaling_factor
