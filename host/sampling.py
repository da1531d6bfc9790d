"""Sampling through ComfyUI's samplers, and the LATENT and NOISE layouts its nodes pass."""

from __future__ import annotations

import math

import comfy.sample
import comfy.samplers
import torch

from . import images


def txt2img(model, vae, positive: list, negative: list, latent_shape: tuple[int, ...], seed: int, steps: int,
            cfg: float, sampler: str, scheduler: str) -> torch.Tensor:
    """A txt2img IMAGE of the model as it is now, as KSampler and VAE Decode make it."""
    with torch.no_grad():
        latent = torch.zeros(1, *latent_shape)
        noise = comfy.sample.prepare_noise(latent, seed)
        samples = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                                      disable_pbar=True, seed=seed)
        return images.vae_decode(vae, samples)


def sampler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SCHEDULERS)


def sigma_schedule(model, scheduler: str, steps: int) -> torch.Tensor:
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def starts_at_max_sigma(model, sigma: float) -> bool:
    """Whether ComfyUI's samplers treat this first sigma as full noise (they then scale the noise by
    sqrt(1 + sigma^2) instead of sigma)."""
    max_sigma = float(model.get_model_object("model_sampling").sigma_max)
    return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


def latent_samples(latent: dict) -> torch.Tensor:
    """The tensor of a LATENT."""
    return latent["samples"]


def latent_batch_index(latent: dict) -> list[int] | None:
    """Which images of a larger batch a LATENT holds (set by e.g. Latent From Batch), for seeding noise."""
    return latent.get("batch_index")


def latent_with_samples(latent: dict, samples: torch.Tensor) -> dict:
    """A LATENT like `latent` (masks, batch index) holding `samples`."""
    return dict(latent, samples=samples)


class NoiseSource:
    """A ComfyUI NOISE (what SamplerCustomAdvanced's noise input takes) whose noise for a LATENT is
    `generate(samples, batch_index)`."""

    def __init__(self, seed: int, generate):
        self.seed, self.generate = seed, generate

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return self.generate(latent_samples(input_latent), latent_batch_index(input_latent))


def random_noise(latent: torch.Tensor, seed: int, batch_index=None) -> torch.Tensor:
    return comfy.sample.prepare_noise(latent, seed, batch_index)


def denoise_once(model, positive: list, latent: torch.Tensor, noise: torch.Tensor, sigma: float,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the latent diffusion.noised to `sigma` with `noise`, the model's denoised estimate of it), conditioned
    on `positive` alone (no guidance), in model space.

    It runs as a one-step "sampler" inside ComfyUI's own sampling, so everything that shapes a real
    sampling step (LoRA and other model patches, ControlNets, conditioning areas) shapes it too."""
    captured = {}

    def predict_once(model_wrap, x, sigmas, extra_args=None, callback=None, disable=None):
        denoised = model_wrap(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
        captured["x"], captured["denoised"] = x, denoised
        return denoised

    sigmas = torch.tensor([sigma, 0.0])
    comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.KSAMPLER(predict_once), sigmas, positive, positive,
                               latent, disable_pbar=True, seed=seed)
    return captured["x"].cpu(), captured["denoised"].cpu()


def sample_from(model, positive: list, negative: list, latent: torch.Tensor, noise: torch.Tensor,
                sigmas: torch.Tensor, cfg: float, sampler_name: str, seed: int) -> torch.Tensor:
    """Sample along `sigmas` starting at noise_scaling(sigmas[0], noise, latent) (what every ComfyUI
    sampler does with its NOISE input); returns a VAE-space latent."""
    sampler = comfy.samplers.sampler_object(sampler_name)
    return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent,
                                      disable_pbar=True, seed=seed)
