"""The training loss in each family's own parameterisation, checked against the published formulas
computed here from scratch (not through ComfyUI's model sampling): SD1.x predicts the noise, SD2.x
768-v predicts v (Salimans & Ho 2022, arXiv 2202.00512, eq. for v), both on the scaled-linear
schedule of latent diffusion (beta from 0.00085 to 0.012 over 1000 steps)."""

import pytest
import torch

TIMESTEPS = torch.tensor([20, 400, 950])


def _alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)


def _raw_output_and_targets(model, clip, x0: torch.Tensor, noise: torch.Tensor):
    """The UNet's raw output on the variance-preserving x_t, and the (epsilon, v) targets."""
    abar = _alphas_cumprod()[TIMESTEPS].float().view(-1, 1, 1, 1)
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    x_t = alpha * x0 + sigma * noise
    cond, _ = clip.encode_from_tokens(clip.tokenize("a watercolor fox"), return_pooled=True)
    unet = model.model.diffusion_model
    raw = unet(x_t, TIMESTEPS.float(), context=cond.expand(len(TIMESTEPS), -1, -1))
    return raw, noise, alpha * noise - sigma * x0


@pytest.mark.parametrize(("family", "target"), [("sd15", "epsilon"), ("sd2_v", "v")])
def test_training_loss_is_the_mse_against_the_published_target(pkg, request, family, target):
    from inst_styleforge import host
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse

    model, clip, _ = request.getfixturevalue(family)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(TIMESTEPS), 4, 8, 8, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    with torch.no_grad():
        raw, epsilon, v = _raw_output_and_targets(model, clip, x0, noise)
        expected = (raw - {"epsilon": epsilon, "v": v}[target]).pow(2).flatten(1).mean(1)
        other = (raw - {"epsilon": v, "v": epsilon}[target]).pow(2).flatten(1).mean(1)
        cond, pooled = host.text.encode_tokens_for_training(clip, host.text.tokenize(clip, "a watercolor fox"))
        ours = prediction_mse(model, x0, noise, host.diffusion.sigma_at(model, TIMESTEPS),
                              cond.expand(len(TIMESTEPS), -1, -1), pooled)
    assert host.diffusion.is_v_prediction(model) == (target == "v")
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, other, rtol=1e-2)  # the two targets are told apart
