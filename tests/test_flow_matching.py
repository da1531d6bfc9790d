"""Training SD3.5 by flow matching, checked against the published formulas computed here from scratch (not
through ComfyUI's model sampling): rectified flow's noisy latent x_t = (1 - sigma) x_0 + sigma * noise and
velocity target noise - x_0, and SD3's noise levels, logit-normal times shifted by s = 3 (Esser et al.
2024, arXiv 2403.03206, sec. 2, 3.1 and 5.3.2)."""

import math

import pytest
import torch

SHIFT = 3.0  # SD3.5's, as released (ComfyUI's SD3 model sampling default)
TIMESTEPS = torch.tensor([20, 400, 950])  # of the model's 1000; flow time t = timestep / 1000
DRAWS = 20000
# Kolmogorov-Smirnov: a sample of DRAWS from the stated distribution exceeds this distance from its CDF
# with probability 0.001 (critical value 1.95 / sqrt(n)).
KS_CRITICAL = 1.95 / math.sqrt(DRAWS)


def _shifted(t: torch.Tensor, shift: float = SHIFT) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def test_the_flow_matching_loss_is_the_mse_against_the_published_velocity(pkg, sd35):
    from inst_styleforge import host
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse

    model, clip, _ = sd35
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(TIMESTEPS), 16, 8, 8, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    sigma = _shifted(TIMESTEPS.double() / 1000).float()
    with torch.no_grad():
        cond, pooled = host.text.encode_tokens_for_training(clip, host.text.tokenize(clip, "a watercolor fox"))
        cond, pooled = cond.expand(len(TIMESTEPS), -1, -1), pooled.expand(len(TIMESTEPS), -1)
        x_t = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * noise
        raw = model.model.diffusion_model(x_t, sigma * 1000, context=cond, y=pooled)  # SD3 embeds 1000 sigma
        expected = (raw - (noise - x0)).pow(2).flatten(1).mean(1)
        epsilon_target = (raw - noise).pow(2).flatten(1).mean(1)
        ours = prediction_mse(model, x0, noise, host.diffusion.sigma_at(model, TIMESTEPS), cond, pooled)
    assert host.diffusion.is_flow_matching(model)
    torch.testing.assert_close(host.diffusion.sigma_at(model, TIMESTEPS), sigma, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, epsilon_target, rtol=1e-2)  # the velocity, not the noise


def _logit_normal_shifted_cdf(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """P(shifted(t) <= sigma) for logit(t) ~ N(0, 1): t = sigma / (s - (s - 1) sigma) inverts the shift."""
    t = sigma / (shift - (shift - 1) * sigma)
    return 0.5 * (1 + torch.erf(torch.logit(t) / math.sqrt(2)))


def _ks_distance(sample: torch.Tensor, cdf) -> float:
    ordered = sample.double().sort().values
    n = len(ordered)
    expected = cdf(ordered)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - expected
    below = expected - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


@pytest.mark.parametrize("shift", [SHIFT, 6.0])  # as loaded, and after stock ModelSamplingSD3 set to 6
def test_noise_levels_are_logit_normal_times_shifted_as_the_model_samples(pkg, sd35, shift):
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    from inst_styleforge import host
    from inst_styleforge.training_kit.diffusion_loss import draw_timesteps_and_noise

    model = sd35[0] if shift == SHIFT else ModelSamplingSD3().patch(sd35[0], shift)[0]
    timesteps, _ = draw_timesteps_and_noise(model, torch.Size([DRAWS, 1, 1, 1]), torch.Generator().manual_seed(0))
    sigma = host.diffusion.sigma_at(model, timesteps)

    def cdf(s: torch.Tensor) -> torch.Tensor:
        return _logit_normal_shifted_cdf(s, shift)

    assert _ks_distance(sigma, cdf) < KS_CRITICAL
    # the test tells the neighbours apart: uniform times shifted, and logit-normal times unshifted
    generator = torch.Generator().manual_seed(0)
    uniform = _shifted(torch.rand(DRAWS, generator=generator, dtype=torch.float64), shift)
    unshifted = torch.sigmoid(torch.randn(DRAWS, generator=generator, dtype=torch.float64))
    assert min(_ks_distance(d, cdf) for d in (uniform, unshifted)) > 5 * KS_CRITICAL
