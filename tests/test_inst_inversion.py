"""Stochastic inversion in-process on the tiny SD1.5: the formula, paper parity, limits, bad inputs; and the
flow-matching formula on the tiny SD3.5."""

import pytest
import torch
from images_for_tests import content_tensor, painting_tensor

SEED = 11


@pytest.fixture(scope="module")
def setup(pkg, sd15):
    from inst_styleforge.inst_core import inversion

    model, clip, vae = sd15
    with torch.inference_mode():
        content = {"samples": vae.encode(content_tensor())}
        style = {"samples": vae.encode(painting_tensor()[:, :64, :64])}
        positive = clip.encode_from_tokens_scheduled(clip.tokenize("a cubist painting"))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return inversion, model, content, style, positive, negative


def _unet_eps(model, x_vp: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
    """The published eps_theta(x_t, t, c): the raw UNet on the VP latent at integer timestep t."""
    return model.model.diffusion_model(x_vp, timesteps=torch.tensor([float(t)]), context=cond)


def test_inverted_start_equals_the_formula_from_the_models_own_prediction(setup):
    inversion, model, content, _, positive, _ = setup
    sigmas = inversion.self_consistent_plan(model, 0.6, 10, "normal").sigmas
    with torch.inference_mode():
        noise = inversion.predicted_noise_source(model, positive, sigmas, SEED).generate_noise(content)
        sigma = sigmas[0]
        z = model.model.process_latent_in(content["samples"])
        x = z + sigma * torch.randn(z.shape, generator=torch.manual_seed(SEED))
        denoised = model.model.apply_model(x, sigma[None], c_crossattn=positive[0][0])
        expected_start = z + sigma * (x - denoised) / sigma
    # the sampler starts at z + sigma * noise
    torch.testing.assert_close(z + sigma * noise, expected_start, rtol=0, atol=1e-4)


def test_on_sd35_the_inverted_start_is_the_flow_formula_and_paper_parity_is_refused(pkg, sd35):
    """Flow matching: x_s = (1 - s) z + s n, and the model's velocity v = n - z gives its predicted noise
    x_s + (1 - s) v; the sampler starts at (1 - s) z + s * noise."""
    from inst_styleforge.inst_core import inversion
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd35
    with torch.inference_mode():
        content = {"samples": vae.encode(content_tensor())}
        [[cond, extra]] = positive = clip.encode_from_tokens_scheduled(clip.tokenize("a cubist painting"))
        sigmas = inversion.self_consistent_plan(model, 0.6, 10, "normal").sigmas
        noise = inversion.predicted_noise_source(model, positive, sigmas, SEED).generate_noise(content)
        s = float(sigmas[0])
        z = model.model.process_latent_in(content["samples"])
        x = (1 - s) * z + s * torch.randn(z.shape, generator=torch.manual_seed(SEED))
        v = model.model.diffusion_model(x, torch.tensor([s * 1000]), context=cond, y=extra["pooled_output"])
        expected_start = (1 - s) * z + s * (x + (1 - s) * v)
    torch.testing.assert_close((1 - s) * z + s * noise, expected_start, rtol=0, atol=1e-4)
    with pytest.raises(InputError, match="'mode': is paper_parity, the official SD1.x notebook's"):
        inversion.style_transfer(model, positive, positive, content, 0.6, 4, 5.0, "euler", "normal", SEED,
                                 mode=inversion.PAPER_PARITY)


def test_paper_parity_equals_a_reference_ddim_loop(setup):
    inversion, model, content, _, positive, negative = setup
    strength = 0.7
    with torch.inference_mode():
        ours = inversion.style_transfer(model, positive, negative, content, strength, 0, 0.0, "euler", "normal",
                                        SEED, mode=inversion.PAPER_PARITY)["samples"]
        abar = 1 / (1 + model.model.model_sampling.sigmas.float() ** 2)
        c, uc = positive[0][0], negative[0][0]
        z = content["samples"] * 0.18215
        t_enc = int(strength * 1000)  # 700
        noise = torch.randn(z.shape, generator=torch.manual_seed(SEED))
        x_noisy = abar[t_enc].sqrt() * z + (1 - abar[t_enc]).sqrt() * noise
        eps = _unet_eps(model, x_noisy, t_enc, c)
        x = abar[t_enc].sqrt() * z + (1 - abar[t_enc]).sqrt() * eps  # stochastic_encode with the prediction
        grid = list(range(1, 1000, 20))[: int(strength * 50)]  # DDIM "uniform": 1, 21, ..., 681
        for i in reversed(range(len(grid))):
            a_t, a_prev = abar[grid[i]], abar[grid[i - 1]] if i > 0 else abar[0]
            e_u, e_c = _unet_eps(model, x, grid[i], uc), _unet_eps(model, x, grid[i], c)
            e = e_u + 10.0 * (e_c - e_u)
            x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e  # eta 0
        reference = x / 0.18215
    assert grid[-1] == 681
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_strength_zero_returns_the_content_and_one_is_a_full_generation_schedule(setup):
    import comfy.samplers

    inversion, model, content, _, positive, negative = setup
    with torch.inference_mode():
        out = inversion.style_transfer(model, positive, negative, content, 0.0, 8, 7.0, "euler", "normal", SEED)
    assert torch.equal(out["samples"], content["samples"])
    full = inversion.self_consistent_plan(model, 1.0, 8, "normal").sigmas
    plain = comfy.samplers.calculate_sigmas(model.model.model_sampling, "normal", 8).cpu()
    assert torch.equal(full, plain)  # the same schedule as plain generation, from sigma_max


def test_same_seed_same_result_and_another_seed_another(setup):
    inversion, model, content, style, positive, negative = setup
    with torch.inference_mode():
        runs = [inversion.style_transfer(model, positive, negative, content, 0.5, 4, 5.0, "euler", "normal", SEED,
                                         style=style)["samples"] for _ in range(2)]
        other = inversion.style_transfer(model, positive, negative, content, 0.5, 4, 5.0, "euler", "normal",
                                         SEED + 1, style=style)["samples"]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], other)


def test_transfer_with_a_style_latent_gives_the_content_the_style_statistics_first(setup):
    """With a style latent, the transfer starts from the content AdaIN'd to the style: at strength 0 that
    start is the output, with the style's per-channel mean and std and the content's layout."""
    from inst_styleforge.inst_core.adain import channel_stats

    inversion, model, _, _, positive, negative = setup
    generator = torch.Generator().manual_seed(SEED)
    content = {"samples": torch.randn(1, 4, 8, 8, generator=generator) * 2 - 0.5}
    style = {"samples": torch.randn(1, 4, 12, 10, generator=generator) * 0.5 + 1}  # other statistics, other size
    with torch.inference_mode():
        out = inversion.style_transfer(model, positive, negative, content, 0.0, 4, 5.0, "euler", "normal", SEED,
                                       style=style)["samples"]
    for ours, wanted, original in zip(channel_stats(out), channel_stats(style["samples"]),
                                      channel_stats(content["samples"])):
        torch.testing.assert_close(ours, wanted.expand_as(ours), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(original, wanted, atol=1e-2), "the content's statistics were different"
    normalised = [(x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True) for x in (out, content["samples"])]
    torch.testing.assert_close(normalised[0], normalised[1], rtol=1e-3, atol=1e-3)


def test_adain_matches_style_statistics_and_refuses_mismatched_batches(pkg):
    from inst_styleforge.inst_core.adain import adain, channel_stats
    from inst_styleforge.training_kit.errors import InputError

    content, style = torch.randn(2, 4, 8, 8), torch.randn(1, 4, 12, 10) * 3 + 1
    out = adain(content, style)
    for a, b in zip(channel_stats(out), channel_stats(style)):
        torch.testing.assert_close(a, b.expand_as(a), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="'style': batch of 3 does not match the content batch of 2"):
        adain(content, torch.randn(3, 4, 8, 8))
    with pytest.raises(InputError, match="'style': has 16 latent channels"):
        adain(content, torch.randn(1, 16, 8, 8))


def test_bad_strength_and_foreign_conditioning_are_refused(setup):
    from inst_styleforge.training_kit.errors import InputError

    inversion, model, content, _, positive, negative = setup
    with pytest.raises(InputError, match="'strength': 1.5 is outside"):
        inversion.style_transfer(model, positive, negative, content, 1.5, 4, 5.0, "euler", "normal", SEED)
    sd2_like = [[torch.zeros(1, 77, 1024), {}]]  # what an SD2.x (OpenCLIP-H) text encoder produces
    with pytest.raises(InputError, match="'positive': has 1024-wide text features but the model expects 768"):
        inversion.style_transfer(model, sd2_like, negative, content, 0.5, 4, 5.0, "euler", "normal", SEED)
