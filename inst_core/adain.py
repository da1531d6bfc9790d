"""Latent AdaIN: give the content latent the per-channel statistics of the style latent.

InST's notebook applies it to the content latent before the stochastic inversion, so the colours
of the painting are in place before any denoising. Statistics are means and standard deviations
over H x W per channel, so content and style may differ in size; only the channel count and the
batch must agree (a style batch of 1 is used for every content image).
"""

import torch

from ..training_kit.errors import InputError

ADAIN_EPS = 1e-5  # added to the unbiased variance, as in the official calc_mean_std


def channel_stats(latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = latent.flatten(2)
    mean = flat.mean(dim=2)[..., None, None]
    std = (flat.var(dim=2, unbiased=True) + ADAIN_EPS).sqrt()[..., None, None]
    return mean, std


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Content normalised per channel, then rescaled to the style's mean and std."""
    if content.ndim != 4 or style.ndim != 4:
        raise InputError("content", f"expected 4-D image latents (B, C, H, W), got {tuple(content.shape)} "
                         f"and {tuple(style.shape)}.", "Connect plain image latents (not video or audio).")
    if content.shape[1] != style.shape[1]:
        raise InputError("style", f"has {style.shape[1]} latent channels but the content has {content.shape[1]}.",
                         "Encode both images with the same VAE.")
    if style.shape[0] not in (1, content.shape[0]):
        raise InputError("style", f"batch of {style.shape[0]} does not match the content batch of "
                         f"{content.shape[0]}.", "Use one style image, or one per content image.")
    c_mean, c_std = channel_stats(content.float())
    s_mean, s_std = channel_stats(style.float())
    out = (content.float() - c_mean) / c_std * s_std + s_mean
    return out.to(content.dtype)
