"""InST's stochastic inversion: start the reverse process from the noise the model itself predicts.

In ComfyUI's terms (sigma = sqrt((1 - abar) / abar), x_VE = x_VP / sqrt(abar)): noise the content
latent z to the first sigma with random noise, let the model predict the noise under the style
conditioning (conditional only, no guidance), and start sampling from z + sigma * predicted noise.
Any ComfyUI sampler continues from there. On flow-matching models (SD3.5, FLUX.1), where x_sigma =
(1 - sigma) z + sigma * noise, the same: the start is (1 - sigma) z + sigma * predicted noise. The
inversion needs no style token, only conditioning, so it takes FLUX.1 too, which the trainer does not.

Two ways to pick the noise level:
- "self_consistent" (default): the inversion sigma is the first sigma of the sampling schedule, so
  the start point and the first sampling step agree. Strength is ComfyUI's denoise.
- "paper_parity": the official notebook's arithmetic: noise at t = int(s * 1000), a 50-step DDIM
  grid entered at step int(s * 50) (t=681 for s=0.7 while the noise was made at t=700), CFG 10.
  DDIM with eta 0 is ComfyUI's Euler in sigma space. SD1.x's DDPM arithmetic: not for flow models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import host
from ..training_kit.errors import InputError
from ..training_kit.model_checks import STABLE_DIFFUSION_OR_FLUX, require_model_family
from .adain import adain

SELF_CONSISTENT = "self_consistent"
PAPER_PARITY = "paper_parity"
MODES = (SELF_CONSISTENT, PAPER_PARITY)
PARITY_DDIM_STEPS = 50
PARITY_CFG = 10.0
PARITY_SAMPLER = "euler"  # DDIM, eta 0


@dataclass(frozen=True)
class InversionPlan:
    """Where the inversion noises (sigma_noise), where sampling starts and how it proceeds."""

    sigma_noise: float
    sigmas: torch.Tensor  # the sampling schedule; sigmas[0] is where sampling starts
    rescale_output: float = 1.0  # parity: the official sampler returns x_VP at its last sigma


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise InputError("strength", f"{strength} is outside [0, 1].",
                         "0 returns the content unchanged, 1 starts from full noise; the paper uses 0.7.")


def check_conditioning(model, conditioning: list, input_name: str) -> None:
    """Refuse text features of another model family (e.g. SD2's 1024-wide CLIP-H into an SD1.5 UNet, or
    SD3.5's 2048-wide pooled vector into FLUX.1, whose text features are 4096 wide as SD3.5's are)."""
    width, pooled = host.models.text_context_width(model), host.models.pooled_input_width(model)
    for found, found_pooled in host.text.conditioning_widths(conditioning):
        if found != width:
            mismatch = f"{found}-wide text features but the model expects {width}"
        elif pooled is not None and found_pooled is not None and found_pooled != pooled:
            mismatch = f"a {found_pooled}-wide pooled vector but the model expects {pooled}"
        else:
            continue
        raise InputError(input_name, f"has {mismatch}: it was made by another model family's CLIP.",
                         "Encode the prompt with the CLIP loaded with the model (its checkpoint's, or its text "
                         "encoders' loader).")


def self_consistent_plan(model, strength: float, steps: int, scheduler: str) -> InversionPlan:
    """ComfyUI's own denoise semantics: the last `steps` of a schedule of int(steps / strength)."""
    total = max(steps, int(steps / strength))
    sigmas = host.sampling.sigma_schedule(model, scheduler, total)[-(steps + 1):]
    return InversionPlan(float(sigmas[0]), sigmas)


def parity_plan(model, strength: float) -> InversionPlan:
    timestep_sigmas = host.diffusion.timestep_sigmas(model)
    num_timesteps = timestep_sigmas.shape[0]
    t_enc = min(int(strength * num_timesteps), num_timesteps - 1)
    stride = num_timesteps // PARITY_DDIM_STEPS
    grid = list(range(1, num_timesteps, stride))[: int(strength * PARITY_DDIM_STEPS)]  # 1, 21, ..., 681
    if not grid:
        raise InputError("strength", f"{strength} enters the 50-step DDIM grid at step 0.", "Use at least 0.02.")
    path = [timestep_sigmas[t] for t in reversed(grid)] + [timestep_sigmas[0]]  # DDIM's last step lands on t=0
    last = float(timestep_sigmas[0])
    return InversionPlan(float(timestep_sigmas[t_enc]), torch.stack(path), rescale_output=(1 + last**2) ** -0.5)


def inverted_noise(model, positive: list, content: torch.Tensor, plan: InversionPlan, seed: int,
                   batch_index=None) -> torch.Tensor:
    """Noise in model space whose use by a sampler starting at plan.sigmas[0] reproduces InST's
    inverted latent for this content."""
    noise = host.sampling.random_noise(content, seed, batch_index)
    x, denoised = host.sampling.denoise_once(model, positive, content, noise, plan.sigma_noise, seed)
    if host.diffusion.is_flow_matching(model):
        # x = (1 - s) z + s n, so the model predicts the noise (x - (1 - s) denoised) / s; a sampler that
        # starts at s from it starts at (1 - s) z + s n_hat (flow plans invert where sampling starts). The
        # sampler scales the noise it is given as it scaled n (ComfyUI 0.38's noise_scale): divided here.
        predicted = (x - (1 - plan.sigma_noise) * denoised) / plan.sigma_noise
        return predicted / host.diffusion.flow_noise_scale(model)
    # the noise the model predicts at sigma_n (no guidance): (x - denoised) / sigma in VE terms
    predicted = (x - denoised) / plan.sigma_noise
    sigma0 = float(plan.sigmas[0])
    # The start, in VP terms sqrt(abar_n) z + sqrt(1 - abar_n) eps_hat, read at sigma0 (the official
    # sampler reads it there even when sigma_n differs), is r z + r sigma_n eps_hat in VE terms with
    # r = alpha_n / alpha_0; r is 1 when the plan is self-consistent. The sampler adds z itself and
    # multiplies its noise by `scale`.
    ratio = (1 + sigma0**2) ** 0.5 / (1 + plan.sigma_noise**2) ** 0.5
    scale = (1 + sigma0**2) ** 0.5 if host.sampling.starts_at_max_sigma(model, sigma0) else sigma0
    z = host.diffusion.latent_to_model_space(model, content.float())
    return ((ratio - 1) * z + plan.sigma_noise * ratio * predicted) / scale


def style_transfer(model, positive: list, negative: list, content: dict, strength: float, steps: int, cfg: float,
                   sampler_name: str, scheduler: str, seed: int, mode: str = SELF_CONSISTENT,
                   style: dict | None = None) -> dict:
    """The whole transfer: optional AdaIN, stochastic inversion, sampling. Returns a LATENT dict."""
    require_model_family(model, STABLE_DIFFUSION_OR_FLUX)
    check_strength(strength)
    check_conditioning(model, positive, "positive")
    check_conditioning(model, negative, "negative")
    if mode not in MODES:
        raise InputError("mode", f"'{mode}' is not one of {list(MODES)}.")
    samples = host.sampling.latent_samples(content)
    if style is not None:
        samples = adain(samples, host.sampling.latent_samples(style))
    if strength == 0:
        return host.sampling.latent_with_samples(content, samples)
    if mode == PAPER_PARITY and host.diffusion.is_flow_matching(model):
        raise InputError("mode", f"is {PAPER_PARITY}, the official SD1.x notebook's DDPM/DDIM arithmetic, which a "
                         "flow-matching model (SD3.5, FLUX.1) does not have.", f"Use {SELF_CONSISTENT}.")
    if mode == PAPER_PARITY:
        plan, cfg, sampler_name = parity_plan(model, strength), PARITY_CFG, PARITY_SAMPLER
    else:
        plan = self_consistent_plan(model, strength, steps, scheduler)
    noise = inverted_noise(model, positive, samples, plan, seed, host.sampling.latent_batch_index(content))
    out = host.sampling.sample_from(model, positive, negative, samples, noise, plan.sigmas, cfg, sampler_name, seed)
    if plan.rescale_output != 1.0:
        rescaled = host.diffusion.latent_to_model_space(model, out) * plan.rescale_output
        out = host.diffusion.latent_from_model_space(model, rescaled)
    return host.sampling.latent_with_samples(content, out)


def predicted_noise_source(model, positive: list, sigmas: torch.Tensor, seed: int) -> host.sampling.NoiseSource:
    """A ComfyUI NOISE (SamplerCustomAdvanced's noise input) that yields the inverted noise, so users
    keep their own sampler, scheduler, guider and CFG. `sigmas` must be the schedule the sampler
    gets: the inversion happens at its first sigma."""
    if sigmas.numel() < 2:
        raise InputError("sigmas", "has fewer than two values, so there is no step to sample.",
                         "Connect a scheduler's SIGMAS (e.g. BasicScheduler with denoise = strength).")
    require_model_family(model, STABLE_DIFFUSION_OR_FLUX)
    check_conditioning(model, positive, "positive")
    plan = InversionPlan(float(sigmas[0]), sigmas.cpu())
    return host.sampling.NoiseSource(
        seed, lambda samples, batch_index: inverted_noise(model, positive, samples, plan, seed, batch_index))
