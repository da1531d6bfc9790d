"""StyleForge on FLUX.1 [dev], in-process on a shallow Flux that ComfyUI's own loader detects as Flux.

What runs here and what does not: FLUX.1 reads its prompt through T5-XXL (4.7B parameters, 9.5 GB in
fp16), which CI's 2 cores and 24 GB cannot build and run, so these tests give the trainer its text
features as Gaussian tensors of FLUX.1's shapes (T5 tokens 4096 wide, CLIP-L's pooled 768), through
a `TextConditioner`'s cache: the form a frozen text encoder's prompts take after `encode_ahead`.
Everything after the text encoder is ComfyUI's and the trainer's own: the DiT, its model sampling,
the LoRA adapters, their file and stock LoRA loading. With a full-size T5-XXL (built on demand,
outside CI) the whole path from CLIP to LoRA runs in
`test_styleforge_trains_flux_from_its_own_text_encoders`.

The loss and noise levels are checked against the published formulas computed here (rectified flow:
Esser et al. 2024, arXiv 2403.03206; FLUX.1's resolution-dependent shift: Black Forest Labs' reference
sampling code, mu linear in the image's token count from 0.5 at 256 tokens to 1.15 at 4096).
"""

import dataclasses
import logging
import math
import os

import pytest
import torch
from frozen_weights import changed_weights, snapshot
from test_flow_matching import DRAWS, KS_CRITICAL, _ks_distance, _logit_normal_shifted_cdf

LOADED_MU = 1.15  # ComfyUI's Flux model sampling as loaded (FLUX.1's shift at 1024 x 1024)
GUIDANCE = 1.0  # what the trainer feeds FLUX.1 [dev]'s guidance input
TEXT_TOKENS = 8  # the cached T5 features' length (real ones: 256); the DiT takes any length
FAST = dict(steps=2, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0)
FULL_T5 = "INST_STYLEFORGE_FULL_T5"  # set to 1 to run the test that builds a full-size T5-XXL


@pytest.fixture(scope="module")
def flux(tiny_models):
    """The tiny FLUX.1 [dev] (MODEL, VAE), loaded by ComfyUI's checkpoint loader under inference mode."""
    import comfy.sd

    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(tiny_models["tiny_flux_dev"]),
                                                                   output_vae=True, output_clip=True)
    assert clip is None  # the fixture has no text encoders
    return model, vae


@pytest.fixture(scope="module")
def sets(styleforge_sets):
    """One painting per StyleRef set (the fixed evaluation set's size: its forwards dominate a short run)
    and the 4 people of Aux."""
    from inst_styleforge.styleforge_core import datasets

    def first(images):
        return datasets.from_batch(images.images[0])

    return dataclasses.replace(styleforge_sets, style=first(styleforge_sets.style),
                               backgrounds=first(styleforge_sets.backgrounds))


def _text_features(seed: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TEXT_TOKENS, 4096, generator=generator), torch.randn(batch, 768, generator=generator)


def _shifted(t: torch.Tensor, mu: float) -> torch.Tensor:
    """FLUX.1's time shift e^mu / (e^mu + 1/t - 1)."""
    return math.exp(mu) / (math.exp(mu) + 1 / t - 1)


def test_comfyui_loads_the_fixture_as_flux_dev_trained_by_flow_matching(pkg, flux):
    from inst_styleforge import host

    model, _ = flux
    assert host.models.model_family(model) == "Flux"
    assert host.diffusion.is_flow_matching(model) and not host.models.has_unet(model)
    assert model.model.diffusion_model.params.guidance_embed  # [dev], not [schnell]
    assert host.models.text_context_width(model) == 4096


def test_the_flux_loss_is_the_mse_against_the_published_velocity_at_guidance_1(pkg, flux):
    from inst_styleforge import host
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse

    model, _ = flux
    t = torch.tensor([0.02, 0.4, 0.95])  # flow times; Flux's timestep is its sigma
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(t), 16, 8, 8, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    cond, pooled = _text_features(1, len(t))
    sigma = _shifted(t.double(), LOADED_MU).float()

    def published(guidance: float) -> torch.Tensor:
        x_t = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * noise
        raw = model.model.diffusion_model(x_t, sigma, context=cond, y=pooled, guidance=torch.full((len(t),), guidance))
        return (raw - (noise - x0)).pow(2).flatten(1).mean(1)

    with torch.no_grad():
        ours = prediction_mse(model, x0, noise, host.diffusion.sigma_at(model, t), cond, pooled)
        expected, at_default_guidance = published(GUIDANCE), published(3.5)
    torch.testing.assert_close(host.diffusion.sigma_at(model, t), sigma, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, at_default_guidance, rtol=1e-3)  # guidance 1, not ComfyUI's default 3.5


@pytest.mark.parametrize("side", [None, 512])  # as loaded, and after stock ModelSamplingFlux at 512 x 512
def test_flux_noise_levels_are_logit_normal_times_shifted_as_the_model_samples(pkg, flux, side):
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux
    from inst_styleforge import host
    from inst_styleforge.training_kit.diffusion_loss import draw_timesteps_and_noise

    model, _ = flux
    mu = LOADED_MU
    if side is not None:
        model = ModelSamplingFlux().patch(model, LOADED_MU, 0.5, side, side)[0]
        tokens = (side // 16) ** 2  # 16 px per token: 8x VAE, 2x2 patches
        mu = 0.5 + (LOADED_MU - 0.5) * (tokens - 256) / (4096 - 256)
    timesteps, _ = draw_timesteps_and_noise(model, torch.Size([DRAWS, 1, 1, 1]), torch.Generator().manual_seed(0))
    sigma = host.diffusion.sigma_at(model, timesteps)

    def cdf(s: torch.Tensor) -> torch.Tensor:  # e^mu / (e^mu + 1/t - 1) is s t / (1 + (s - 1) t) with s = e^mu
        return _logit_normal_shifted_cdf(s, math.exp(mu))

    assert _ks_distance(sigma, cdf) < KS_CRITICAL
    other_mu = 0.5 if side is None else LOADED_MU  # the neighbour: the other shift
    assert _ks_distance(sigma, lambda s: _logit_normal_shifted_cdf(s, math.exp(other_mu))) > 5 * KS_CRITICAL


def _expected_adapters(model) -> set[str]:
    """kohya's FLUX.1 names of the layers StyleForge adapts, written out from the architecture: each
    double-stream block's attention qkv/proj and MLP linears in both streams, each single-stream
    block's linear1/linear2."""
    diffusion_model = model.model.diffusion_model
    double = {f"lora_unet_double_blocks_{i}_{stream}_{layer}" for i in range(len(diffusion_model.double_blocks))
              for stream in ("img", "txt") for layer in ("attn_qkv", "attn_proj", "mlp_0", "mlp_2")}
    single = {f"lora_unet_single_blocks_{i}_{layer}" for i in range(len(diffusion_model.single_blocks))
              for layer in ("linear1", "linear2")}
    return double | single


def _train(training, flux, sets, **overrides):
    model, vae = flux
    config = training.StyleForgeConfig(**{**FAST, **overrides})
    prompts = [config.style_prompt(config.token), config.style_prompt(config.background_token), config.aux_prompt]
    text = training.TextConditioner(None, torch.device("cpu"), frozen=True)  # no text encoder: its prompts cached
    text.cache.update({p: _text_features(k) for k, p in enumerate(prompts)})
    with torch.inference_mode():
        return training.train_styleforge_on_text(model, text, vae, sets, config)


def test_styleforge_trains_flux_adapters_that_stock_lora_loading_maps_and_reproduces(pkg, flux, sets, caplog):
    """Multi-StyleForge (both components, each with Aux) trains every FLUX.1 adapter, leaves the DiT as it
    was, and the saved LoRA loads in ComfyUI's stock LoRA loading with every key: the loaded model
    predicts what the trainer's adapters predict."""
    import comfy.lora
    from inst_styleforge import host
    from inst_styleforge.styleforge_core import training
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets

    model, _ = flux
    before = snapshot({"dit": model.model})
    result = _train(training, flux, sets, method="Multi", gradient_checkpointing="off")
    assert changed_weights(before, {"dit": model.model}) == []
    assert all(torch.isfinite(torch.tensor(result.losses))) and result.terms["Aux"][0] > 0
    tensors = result.trained.tensors
    assert {k.split(".")[0] for k in tensors} == _expected_adapters(model)
    assert all(v.abs().sum() > 0 for k, v in tensors.items() if k.endswith(".lora_up.weight"))
    assert result.trained.metadata["base_model_family"] == "Flux"

    with caplog.at_level(logging.WARNING):
        patches = comfy.lora.load_lora(tensors, comfy.lora.model_lora_keys_unet(model.model, {}))
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(patches) == len(_expected_adapters(model))

    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(4))

    def prediction(m) -> torch.Tensor:
        return _prediction(host, m, latent, noise)

    with torch.inference_mode(), host.trainable.training_context(model), torch.no_grad():
        targets = lora_targets(model, None, include_conv=False, include_text_encoder=False)
        network = LoRANetwork(targets, rank=4, alpha=4.0, seed=0)
        network.load_kohya_state(tensors, "lora")
        base = prediction(model)
        with network.attached(targets):
            hooked = prediction(model)
    with torch.inference_mode():
        merged_model, _ = host.lora.apply_lora(model, None, tensors)
    with torch.inference_mode(), host.trainable.training_context(merged_model), torch.no_grad():
        merged = prediction(merged_model)
    assert (hooked - base).abs().max() > 1e-4, "the LoRA changes the prediction"
    torch.testing.assert_close(merged, hooked, rtol=1e-4, atol=1e-5)


def _prediction(host, model, latent: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    sigma = host.diffusion.sigma_at(model, torch.tensor([0.6]))
    cond, pooled = _text_features(0)
    x = host.diffusion.noised(model, latent, noise, sigma)
    return host.diffusion.predict_denoised(model, x, sigma, host.diffusion.model_inputs(model, cond, pooled, latent))


def test_gradient_checkpointing_per_flux_block_gives_the_same_adapter_gradients(pkg, flux):
    """ComfyUI's Flux blocks add residuals in place; the trainer hands them views whose `+=` adds out of
    place. With each double- and single-stream block checkpointed (recomputed in backward from its
    inputs, which must not have changed) the adapters' gradients are those of a pass that keeps every
    activation."""
    from inst_styleforge import host
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets

    model, _ = flux
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(6))

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        with torch.inference_mode(), host.trainable.training_context(model, None, checkpointing) as patches:
            targets = lora_targets(model, None, include_conv=False, include_text_encoder=False)
            network = LoRANetwork(targets, rank=4, alpha=4.0, seed=0)
            generator = torch.Generator().manual_seed(0)
            for adapter in network.adapters.values():
                torch.nn.init.normal_(adapter.up.weight, std=0.02, generator=generator)
            with network.attached(targets):
                _prediction(host, model, latent, noise).pow(2).mean().backward()
            patches.require_ran()
            return {name: p.grad.clone() for name, p in network.named_parameters()}

    kept, recomputed = gradients(False), gradients(True)
    assert all(g.abs().sum() > 0 for g in kept.values())
    for name, grad in kept.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-4, atol=1e-7)


def test_the_stochastic_inversion_starts_flux_at_the_flow_formula(pkg, flux):
    """The inversion nodes take FLUX.1 (they need conditioning, not an InST token): x_s = (1 - s) z + s n,
    the model's velocity v = n - z gives its predicted noise x_s + (1 - s) v, and the sampler starts at
    (1 - s) z + s * noise; the whole transfer samples from there."""
    from images_for_tests import content_tensor
    from inst_styleforge.inst_core import inversion

    model, vae = flux
    cond, pooled = _text_features(2)
    positive = [[cond, {"pooled_output": pooled, "guidance": 3.5}]]
    seed = 11
    with torch.inference_mode():
        content = {"samples": vae.encode(content_tensor())}
        sigmas = inversion.self_consistent_plan(model, 0.6, 4, "simple").sigmas
        noise = inversion.predicted_noise_source(model, positive, sigmas, seed).generate_noise(content)
        s = float(sigmas[0])
        z = model.model.process_latent_in(content["samples"])
        x = (1 - s) * z + s * torch.randn(z.shape, generator=torch.manual_seed(seed))
        v = model.model.diffusion_model(x, torch.tensor([s]), context=cond, y=pooled, guidance=torch.tensor([3.5]))
        expected_start = (1 - s) * z + s * (x + (1 - s) * v)
        transferred = inversion.style_transfer(model, positive, positive, content, 0.6, 2, 1.0, "euler", "simple",
                                               seed)["samples"]
    torch.testing.assert_close((1 - s) * z + s * noise, expected_start, rtol=0, atol=1e-4)
    assert transferred.shape == content["samples"].shape and torch.isfinite(transferred).all()


def test_flux_refuses_a_trained_text_encoder_and_another_familys_text_and_inst_refuses_flux_with_the_reason(
        pkg, flux, sets, sd35):
    from inst_styleforge.inst_core import inversion
    from inst_styleforge.inst_core import training as inst_training
    from inst_styleforge.styleforge_core import training
    from inst_styleforge.training_kit.errors import InputError

    with pytest.raises(InputError, match="text_encoder_lr.*T5-XXL.*Set text_encoder_lr to 0"):
        _train(training, flux, dataclasses.replace(sets, backgrounds=None), text_encoder_lr=1e-4)
    model, vae = flux
    with pytest.raises(InputError, match="is a Flux model.*not FLUX.1: its DiT reads the prompt's tokens from T5-XXL"):
        inst_training.train_style(model, sd35[1], vae, None, [], inst_training.InSTTrainingConfig())
    with pytest.raises(InputError, match="Input 'clip': is not FLUX.1's text encoder pair.*DualCLIPLoader"):  # 4096 too
        training.train_styleforge(model, sd35[1], vae, sets, training.StyleForgeConfig(**FAST, method="Multi"))
    with torch.inference_mode():
        sd35_conditioning = sd35[1].encode_from_tokens_scheduled(sd35[1].tokenize("a cubist painting"))
    with pytest.raises(InputError, match="'positive': has a 2048-wide pooled vector but the model expects 768"):
        inversion.predicted_noise_source(model, sd35_conditioning, torch.tensor([0.9, 0.5, 0.0]), 0)


@pytest.mark.skipif(os.environ.get(FULL_T5) != "1", reason=f"builds a full-size T5-XXL (4.7B parameters, 9.5 GB): "
                    f"set {FULL_T5}=1 to run it")
def test_styleforge_trains_flux_from_its_own_text_encoders(pkg, flux, sets, caplog):
    """The whole Flux path, outside CI: ComfyUI's Flux text encoder pair as DualCLIPLoader (type flux)
    builds it (CLIP-L and a full-size T5-XXL, random bf16 weights), the trainer encoding its prompts
    with it once before training, validation rounds sampling through it (before training and at the
    end), and the LoRA in stock LoRA loading with every key."""
    import comfy.lora
    import comfy.sd
    from inst_styleforge import host
    from inst_styleforge.inst_core.style_prompt import require_clip_text_encoders
    from inst_styleforge.styleforge_core import training
    from inst_styleforge.training_kit.errors import InputError
    from inst_styleforge.training_kit.validation import ValidationSettings

    t5_shape_keys = {"encoder.block.23.layer.1.DenseReluDense.wi_1.weight": (10240, 4096),
                     "encoder.final_layer_norm.weight": (4096,)}  # what ComfyUI reads T5-XXL and its dtype off
    t5 = {key: torch.zeros(shape, dtype=torch.bfloat16) for key, shape in t5_shape_keys.items()}
    with torch.inference_mode():
        clip = comfy.sd.load_text_encoder_state_dicts([t5, {"text_model.encoder.layers.0.mlp.fc1.weight":
                                                            torch.zeros(3072, 768)}],
                                                      clip_type=comfy.sd.CLIPType.FLUX)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():  # the executor's mode, in which the loader made them
        for p in clip.cond_stage_model.parameters():  # the loader left them unset
            fill = torch.randn(p.shape, generator=generator) * (0.02 if p.dim() > 1 else 0.0) + (p.dim() == 1)
            p.copy_(fill.to(p.dtype))
    assert host.models.text_feature_width(clip) == 4096
    with pytest.raises(InputError, match="Input 'clip': is FLUX.1's text encoder pair; an InST style token"):
        require_clip_text_encoders(clip)  # InST's conditioner and trainer
    sets = dataclasses.replace(sets, backgrounds=None)
    model, vae = flux
    validation = ValidationSettings(every=2, steps=2, cfg=1.0, seed=0, filename_prefix="test_flux/validation")
    with torch.inference_mode():
        result = training.train_styleforge(model, clip, vae, sets, training.StyleForgeConfig(**FAST),
                                           validation=validation)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert {k.split(".")[0] for k in result.trained.tensors} == _expected_adapters(model)
    assert [r.step for r in result.validation.rounds] == [0, 2]  # before training, and at the end
    assert all(r.images for r in result.validation.rounds)
    with caplog.at_level(logging.WARNING):
        comfy.lora.load_lora(result.trained.tensors, comfy.lora.model_lora_keys_unet(model.model, {}))
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
