"""The denoising loss both trainers optimise, in the model's own parameterisation, and its random draws.

A training sample is a clean latent, a noise level and Gaussian noise; the loss is the mean squared
error of the model's raw output against its target: the noise for epsilon models such as SD1.x, v for
v-prediction models such as SD2.x 768-v (the latent diffusion objective both papers train with,
Rombach et al. 2022, arXiv 2112.10752), and the velocity noise - x_0 for flow-matching models such
as SD3.5 and FLUX.1 (rectified flow, Esser et al. 2024, arXiv 2403.03206, sec. 2).

The noise level of a UNet sample is that of a timestep drawn uniformly from the model's 1000 training
timesteps. A flow-matching sample's time t is logit-normal with mean 0 and standard deviation 1 (SD3's
best sampler, "rf/lognorm(0.00, 1.00)", sec. 3.1 and 5.1), shifted as the model samples
(sigma = s t / (1 + (s - 1) t), s = 3 for SD3.5; sec. 5.3.2), as diffusers' SD3 trainer does by default
(kohya's with --weighting_scheme logit_normal --training_shift 3). FLUX.1 as ComfyUI loads it shifts
by s = e^1.15 = 3.158, which is kohya's recommended FLUX.1 setting (--timestep_sampling shift
--discrete_flow_shift 3.1582). FLUX.1 [dev] is guidance-distilled: it trains at guidance 1, as kohya's
FLUX.1 LoRA recipe does (--guidance_scale 1.0).
"""

from __future__ import annotations

import torch

from .. import host
from .images import SampleSize

TRAINING_GUIDANCE = 1.0  # FLUX.1 [dev]'s guidance input while training; other families have none


def draw_timesteps_and_noise(model, shape: torch.Size, generator: torch.Generator,
                             noise_offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A timestep per sample (its noise level: `host.diffusion.sigma_at`) and noise of `shape`;
    `noise_offset` adds a per-channel constant (as in "noise offset" fine-tuning, which helps very dark
    or bright images)."""
    if host.diffusion.is_flow_matching(model):
        t = torch.sigmoid(torch.randn(shape[0], generator=generator))  # logit-normal(0, 1)
        timesteps = host.diffusion.flow_timesteps(model, t)
    else:
        timesteps = torch.randint(0, host.diffusion.num_timesteps(model), (shape[0],), generator=generator)
    noise = torch.randn(shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((*shape[:2], 1, 1), generator=generator)
    return timesteps, noise


def prediction_error(model, denoised: torch.Tensor, latent: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(raw output - target) in the model's own parameterisation (epsilon, v, ...).

    ComfyUI's denoised estimate is affine in the raw model output, so the raw error is the x0 error
    divided by d(denoised)/d(output); for epsilon models that slope is -sigma."""
    slope = host.diffusion.denoised_from_output(model, sigma, torch.ones_like(latent), torch.zeros_like(latent))
    return (denoised - latent) / slope


def prediction_mse(model, latent: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                   pooled: torch.Tensor | None, sizes: list[SampleSize] | None = None) -> torch.Tensor:
    """Per-sample mean squared error of the model's prediction at noise level `sigma`; `sizes` is each
    sample's geometry, for SDXL's size conditioning."""
    x = host.diffusion.noised(model, latent, noise, sigma)
    inputs = host.diffusion.model_inputs(model, cond, pooled, latent, sizes, TRAINING_GUIDANCE)
    denoised = host.diffusion.predict_denoised(model, x, sigma, inputs)
    return prediction_error(model, denoised, latent, sigma).float().pow(2).flatten(1).mean(1)


def min_snr_weights(model, sigma: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, arXiv 2303.09556); SNR = 1/sigma^2 in ComfyUI's
    sigma space, and v-prediction's target carries an extra SNR + 1."""
    snr = sigma.float().pow(-2)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if host.diffusion.is_v_prediction(model) else clipped / snr
