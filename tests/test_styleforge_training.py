"""StyleForge in-process on the tiny SD1.5, loaded as the server loads it: the loss of a step (micro-batches,
Multi's turns, batches), what changes, the hook/stock-merge equivalence, checkpoints and resume, and
the options that change the math (schedule, min-SNR, crops), each against an independent computation."""

import dataclasses
import math

import pytest
import torch
from frozen_weights import changed_weights, snapshot
from images_for_tests import to_image_tensor
from safetensors.torch import load_file
from saved_files import file_metadata

from devhost.example_inputs import painting

FAST = dict(steps=4, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0)


@pytest.fixture(scope="module")
def sf(pkg):
    from inst_styleforge.styleforge_core import datasets, training

    return datasets, training


@pytest.fixture(scope="module")
def sets(styleforge_sets):
    """Single-StyleForge's sets: StyleRef and Aux."""
    return dataclasses.replace(styleforge_sets, backgrounds=None)


def _train(training, sd15, sets, **overrides):
    model, clip, vae = sd15
    with torch.inference_mode():
        return training.train_styleforge(model, clip, vae, sets, training.StyleForgeConfig(**{**FAST, **overrides}))


def test_training_lowers_the_fixed_evaluation_loss_and_changes_only_lora_parameters(sf, sd15, sets):
    model, clip, vae = sd15
    frozen = {"unet": model.model, "text": clip.cond_stage_model, "vae": vae.first_stage_model}
    before = snapshot(frozen)
    result = _train(sf[1], sd15, sets, steps=8, text_encoder_lr=1e-3)
    assert result.eval_after < result.eval_before
    assert len(result.losses) == 8 and all(torch.isfinite(torch.tensor(result.losses)))
    assert changed_weights(before, frozen) == []
    ups = [v for k, v in result.trained.tensors.items() if k.endswith(".lora_up.weight")]
    assert all(u.abs().sum() > 0 for u in ups), "every adapter (UNet and text encoder) was trained"


def test_lambda_zero_makes_the_aux_term_vanish(sf, sd15, sets):
    training = sf[1]
    with_aux = _train(training, sd15, sets, steps=1, aux_weight=1.0)
    without = _train(training, sd15, sets, steps=1, aux_weight=0.0)
    assert with_aux.terms["Aux"][0] > 0
    assert without.terms["Aux"][0] == 0 and without.losses[0] == without.terms["StyleRef"][0]
    # the StyleRef draw does not depend on lambda: same sample, same term (batched with Aux or alone)
    assert without.terms["StyleRef"][0] == pytest.approx(with_aux.terms["StyleRef"][0], rel=1e-4)


LAMBDA = {"styleref": 2.5, "backgrounds": 0.5}  # aux_weight and background_aux_weight, neither 1
# The micro-batches of one optimizer step, in the component order each must have: Multi's components
# take turns micro-batch by micro-batch, continuing across steps (step 2 of 3 micro-batches starts at
# the 4th turn, the backgrounds).
STEP_CASES = {
    "one batch": dict(method="Single", passes="one batch", grad_accumulation=1, step=1, order=("styleref",)),
    "separate passes": dict(method="Single", passes="separate", grad_accumulation=1, step=1, order=("styleref",)),
    "3 micro-batches": dict(method="Single", passes="one batch", grad_accumulation=3, step=2,
                            order=("styleref",) * 3),
    "batch of 4": dict(method="Single", passes="one batch", grad_accumulation=1, step=1, order=("styleref",),
                       batch_size=4),
    "Multi, 3 micro-batches": dict(method="Multi", passes="one batch", grad_accumulation=3, step=2,
                                   order=("backgrounds", "styleref", "backgrounds")),
}


@pytest.mark.parametrize("case", STEP_CASES.values(), ids=STEP_CASES.keys())
def test_each_step_backpropagates_the_mean_over_micro_batches_of_styleref_mse_plus_lambda_times_aux_mse(
        sf, sd15, sets, styleforge_sets, case):
    """The step's gradients equal those of mean over its micro-batches of (MSE_ref + lambda * MSE_aux),
    computed independently (the kit's prediction MSE on each micro-batch's two draws, one autograd call):
    accumulation averages, Multi's components take turns and each brings its own lambda, a batch trains
    on all its samples, and one batch or separate passes give the same gradients."""
    import inst_styleforge.host as host
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse
    from inst_styleforge.training_kit.precision import Precision

    training = sf[1]
    model, clip, vae = sd15
    settings = {k: v for k, v in case.items() if k not in ("step", "order")}
    config = training.StyleForgeConfig(**{**FAST, **settings, "aux_weight": LAMBDA["styleref"],
                                          "background_aux_weight": LAMBDA["backgrounds"]})
    with torch.inference_mode():
        components, aux_set = training.prepare_components(model, vae, styleforge_sets if config.method == "Multi"
                                                          else sets, config, torch.Generator().manual_seed(0))
    by_name = dict(zip(("styleref", "backgrounds"), components))
    conditioner = training.TextConditioner(clip, host.models.compute_device(model), frozen=True)
    with torch.inference_mode():
        conditioner.encode_ahead([p for images in [*(c.images for c in components), aux_set] for p in images.prompts])
    with torch.inference_mode(), host.trainable.training_context(model, clip):
        targets = lora_targets(model, clip, include_conv=False, include_text_encoder=False)
        network = LoRANetwork(targets, config.rank, config.alpha, seed=0)
        for adapter in network.adapters.values():
            torch.nn.init.normal_(adapter.up.weight, std=0.01)  # non-zero, so every weight gets a gradient
        params = list(network.parameters())
        with network.attached(targets):
            precision = Precision("cpu", None)
            step = training.accumulate_gradients(model, conditioner, precision, components, aux_set, config,
                                                 case["step"], lambda loss: loss.backward())
            ours = [p.grad.clone() for p in params]

            def mse(images, micro: int, stream: int) -> torch.Tensor:
                d = training.draw(model, images, config, training.step_seed(config.seed, case["step"], micro, stream))
                assert len(d.prompts) == config.batch_size
                with torch.no_grad():
                    cond, pooled = conditioner(d.prompts)
                return prediction_mse(model, d.latents, d.noise, host.diffusion.sigma_at(model, d.timesteps), cond,
                                      pooled).mean()

            refs = [mse(by_name[name].images, micro, training.STYLEREF_STREAM)
                    for micro, name in enumerate(case["order"])]
            auxes = [mse(aux_set, micro, training.AUX_STREAM) for micro in range(len(case["order"]))]
            losses = [ref + LAMBDA[name] * aux for ref, aux, name in zip(refs, auxes, case["order"])]
            expected = torch.autograd.grad(torch.stack(losses).mean(), params)
    assert step.terms["StyleRef"] == pytest.approx(torch.stack(refs).mean().item(), rel=1e-5)
    assert step.terms["Aux"] == pytest.approx(torch.stack(auxes).mean().item(), rel=1e-5)
    assert step.loss == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_a_batch_draws_distinct_samples(sf, sd15, sets):
    """batch_size samples of a set are different views, and a batch larger than the set is every view
    once."""
    training = sf[1]
    model, _, vae = sd15
    config = training.StyleForgeConfig(**{**FAST, "batch_size": 4})
    with torch.inference_mode():
        [component], _ = training.prepare_components(model, vae, sets, config, torch.Generator().manual_seed(0))
    views = component.images
    assert len(views.prompts) == 6  # 3 paintings, each plain and flipped

    def distinct_rows(latents: torch.Tensor) -> int:
        return len(torch.unique(latents.flatten(1), dim=0))

    for seed in range(30):
        assert distinct_rows(training.draw(model, views, config, seed).latents) == 4, seed
    everything = training.draw(model, views, dataclasses.replace(config, batch_size=8), 0).latents
    assert len(everything) == distinct_rows(everything) == 6


def test_hooked_adapters_compute_what_stock_lora_loading_merges(pkg, sd15):
    """The trainer trains through forward hooks; stock LoraLoader merges W + alpha/rank * up @ down. With
    random (non-zero) adapters on linears, convolutions and the text encoder, both give the same outputs:
    the UNet (fp32 weights on the CPU) to float rounding; the text encoder, whose weights this checkpoint
    keeps in fp16, up to the fp16 rounding of the merged weights (well under 5% of the adapters' effect)."""
    import inst_styleforge.host as host
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets

    model, clip, vae = sd15
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
    sigma = host.diffusion.sigma_at(model, torch.tensor([500]))

    def text(c):
        return host.text.encode_tokens_for_training(c, host.text.tokenize(c, "zwx style"))

    def prediction(m, cond, pooled):
        x = host.diffusion.noised(m, latent, noise, sigma)
        return host.diffusion.predict_denoised(m, x, sigma, host.diffusion.model_inputs(m, cond, pooled, latent))

    with torch.inference_mode(), host.trainable.training_context(model, clip), torch.no_grad():
        targets = lora_targets(model, clip, include_conv=True, include_text_encoder=True)
        network = LoRANetwork(targets, rank=4, alpha=2.0, seed=0)
        for adapter in network.adapters.values():
            torch.nn.init.normal_(adapter.up.weight, std=0.02)
        cond, pooled = text(clip)
        base = cond, prediction(model, cond, pooled)
        with network.attached(targets):
            hooked = text(clip)[0], prediction(model, cond, pooled)
        state = network.kohya_state()
    assert any("_proj_in." in k for k in state) and any("_conv1." in k for k in state), "convolutions adapted"
    with torch.inference_mode():
        merged_model, merged_clip = host.lora.apply_lora(model, clip, state)
    with (torch.inference_mode(), host.trainable.training_context(merged_model, merged_clip),  # loads patches
          torch.no_grad()):
        merged = text(merged_clip)[0], prediction(merged_model, cond, pooled)
    effects = [(h - b).abs().max() for h, b in zip(hooked, base)]
    assert min(effects) > 1e-3, "the adapters change both outputs"
    assert (hooked[0] - merged[0]).abs().max() < 0.05 * effects[0]
    assert torch.allclose(hooked[1], merged[1], atol=1e-4, rtol=1e-4), (hooked[1] - merged[1]).abs().max()


def test_sd35_text_encoder_adapters_carry_the_names_comfyui_maps_onto_those_layers(pkg, sd35):
    """SD3.5's CLIP-L and CLIP-G adapters are saved as lora_te1_ / lora_te2_, and ComfyUI's LoRA key map
    (what stock Load LoRA uses) sends each name to the very layer it trained. The same encoders train
    through the server on SDXL; on SD3.5 the server test trains the MMDiT's adapters."""
    import comfy.lora
    from inst_styleforge.styleforge_core.lora_targets import lora_targets

    model, clip, _ = sd35
    targets = lora_targets(model, clip, include_conv=False, include_text_encoder=True)
    text_encoder = {name: layer for name, layer in targets.items() if name.startswith("lora_te")}
    assert {name.split("_")[1] for name in text_encoder} == {"te1", "te2"}
    key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})
    for name, layer in text_encoder.items():
        assert clip.cond_stage_model.get_submodule(key_map[name].removesuffix(".weight")) is layer, name
    clip_layers = sum(len(getattr(clip.cond_stage_model, f"clip_{k}").transformer.text_model.encoder.layers)
                      for k in ("l", "g"))
    assert len(text_encoder) == 6 * clip_layers  # q, k, v, out, fc1, fc2 of every layer of both


RESUME_TOLERANCE = 1e-6  # max abs difference of LoRA weights (fp32; adapters are ~1e-2)


def test_an_adapter_keeps_its_layers_own_input_for_backward_not_a_converted_copy(pkg):
    """On a GPU the layers compute in fp16/bf16 and the adapters' weights stay fp32: the adapter casts
    its thin weights, so backward keeps the half-precision input the layer got (one tensor for the
    adapters of q, k and v), not an fp32 copy of it per adapter."""
    from inst_styleforge.styleforge_core.lora import LoRAAdapter

    layer = torch.nn.Linear(32, 16).to(torch.bfloat16)
    adapters = [LoRAAdapter(layer, rank=4, alpha=4.0) for _ in range(3)]
    x = torch.randn(2, 8, 32, dtype=torch.bfloat16)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        outputs = [adapter.delta(x) for adapter in adapters]
    x_storage = x.untyped_storage().data_ptr()
    assert any(t.untyped_storage().data_ptr() == x_storage for t in saved), "x itself is kept"
    copies = [t for t in saved if t.numel() == x.numel() and t.untyped_storage().data_ptr() != x_storage]
    assert not copies, f"copies of x kept for backward: {[(t.dtype, tuple(t.shape)) for t in copies]}"
    assert all(out.dtype == torch.bfloat16 for out in outputs)
    sum(out.float().sum() for out in outputs).backward()
    assert all(a.up.weight.grad.dtype == torch.float32 and a.up.weight.grad.abs().sum() > 0 for a in adapters)


def test_a_resumed_run_ends_at_the_uninterrupted_runs_lora(sf, sd15, sets, tmp_path):
    """The checkpoint keeps AdamW's moments and step count beside it; without them the resumed steps
    restart the moments and the LoRA differs. The finished LoRA, saved as Save StyleForge LoRA saves it
    (fp16), keeps them too. The CLIP stops at its penultimate layer (as SD2, SDXL's CLIP-L and many SD1.5
    models do), so the last layer's adapters get no gradient and no AdamW state."""
    training = sf[1]
    from inst_styleforge.styleforge_core.lora_file import load_lora, save_lora
    from inst_styleforge.training_kit.optimizer_state import state_path, tensors_fingerprint

    model, clip, vae = sd15
    clip = clip.clone()
    clip.clip_layer(-2)
    sd15 = (model, clip, vae)
    config = training.StyleForgeConfig(**{**FAST, "steps": 2, "checkpoint_every": 2, "text_encoder_lr": 1e-3})
    path = tmp_path / "ckpt.safetensors"
    with torch.inference_mode():
        finished = training.train_styleforge(model, clip, vae, sets, config, checkpoint_path=path)
    save_lora(finished.trained, tmp_path / "finished.safetensors", "fp16")
    checkpoint = load_lora(path, "resume_from")
    assert checkpoint.steps == 2 and state_path(path).exists() and not list(tmp_path.glob(".*"))
    straight = _train(training, sd15, sets, steps=4, text_encoder_lr=1e-3)

    def resume():
        with torch.inference_mode():
            return training.train_styleforge(model, clip, vae, sets, dataclasses.replace(config, steps=4, rank=8),
                                             resume=load_lora(path, "resume_from"))

    finished_file = tmp_path / "finished.safetensors"  # keeps the state a resume restores, paired with its weights
    kept, beside_checkpoint = (load_file(str(state_path(p))) for p in (finished_file, path))
    assert kept.keys() == beside_checkpoint.keys() and all(torch.equal(kept[k], beside_checkpoint[k]) for k in kept)
    read_back = load_lora(finished_file, "resume_from").tensors
    assert file_metadata(state_path(finished_file))["checkpoint"] == tensors_fingerprint(read_back)
    resumed = resume()
    assert resumed.start_step == 2 and len(resumed.losses) == 2 and resumed.trained.steps == 4
    assert resumed.trained.metadata["rank"] == 4, "rank comes from the resumed file, not the input"
    assert any("optimizer state restored" in note for note in resumed.notes)
    assert resumed.losses == pytest.approx(straight.losses[2:], rel=1e-5)
    difference = max(float((resumed.trained.tensors[k] - v).abs().max()) for k, v in straight.trained.tensors.items())
    assert difference <= RESUME_TOLERANCE

    state_path(path).unlink()
    restarted = resume()
    assert any("moments restart at zero" in note for note in restarted.notes)
    assert max(float((restarted.trained.tensors[k] - v).abs().max())
               for k, v in straight.trained.tensors.items()) > 100 * RESUME_TOLERANCE


def test_gradient_checkpointing_trains_the_same_lora(sf, sd15, sets):
    """The adapters' hooks run again when a checkpointed layer is recomputed in backward: the
    gradients, and so the LoRA, are those of a run that keeps every activation (with the text
    encoder's adapters too). Checkpointing on the SDXL family's UNet, whose blocks are laid out
    differently: test_training_context.py."""
    training = sf[1]
    kept = _train(training, sd15, sets, steps=2, gradient_checkpointing="off", text_encoder_lr=1e-3)
    recomputed = _train(training, sd15, sets, steps=2, gradient_checkpointing="on", text_encoder_lr=1e-3)
    assert recomputed.losses == pytest.approx(kept.losses, rel=1e-5)
    for key, value in kept.trained.tensors.items():
        torch.testing.assert_close(recomputed.trained.tensors[key], value, rtol=1e-4, atol=1e-6)


def test_auto_passes_batch_small_images_and_separate_large_ones(sf):
    config = sf[1].StyleForgeConfig
    assert not config(resolution=64).separate_passes
    assert config(resolution=sf[1].SEPARATE_PASSES_FROM).separate_passes
    assert config(resolution=64, passes="separate").separate_passes
    assert not config(resolution=1024, passes="one batch").separate_passes


def test_cosine_schedule_with_warmup_sets_the_learning_rates_of_its_formula(sf, sd15, sets):
    """Linear warmup to the base rate at step warmup_steps, then half a cosine from the base rate
    (step warmup_steps + 1) toward 0, on every parameter group (UNet and text encoder alike)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, *_: seen.append([group["lr"] for group in optimizer.param_groups]))
    try:
        _train(sf[1], sd15, sets, steps=6, warmup_steps=2, lr_schedule="cosine", unet_lr=1e-3, text_encoder_lr=2e-4)
    finally:
        hook.remove()
    warmup, decay = [1 / 2, 2 / 2], [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert len(seen) == 6
    for lrs, factor in zip(seen, warmup + decay):
        assert sorted(lrs) == pytest.approx(sorted([1e-3 * factor, 2e-4 * factor]), rel=1e-12)


def _published_snr(timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = alpha_bar / (1 - alpha_bar) of Stable Diffusion's scaled-linear schedule (betas from
    0.00085 to 0.012 over 1000 steps, linear in sqrt(beta))."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1 - betas, 0)
    return (alpha_bar / (1 - alpha_bar))[timesteps]


@pytest.mark.parametrize("family", ["sd15", "sd2_v"])
def test_min_snr_gamma_weights_each_term_by_the_published_formula(sf, request, sets, family):
    """Min-SNR-gamma (Hang et al. 2023): each sample's loss times min(SNR, gamma) / SNR for epsilon
    models, min(SNR, gamma) / (SNR + 1) for v-prediction; the first step of a run with and without it
    sees the same draws and the same weights, so each term's ratio is its draw's weight."""
    training = sf[1]
    models = request.getfixturevalue(family)
    gamma = 2.0
    plain = _train(training, models, sets, steps=1, passes="separate")
    weighted = _train(training, models, sets, steps=1, passes="separate", min_snr_gamma=gamma)
    config = training.StyleForgeConfig(**FAST)
    with torch.inference_mode():
        [component], aux = training.prepare_components(models[0], models[2], sets, config,
                                                       torch.Generator().manual_seed(config.seed))
    for term, images, stream in (("StyleRef", component.images, training.STYLEREF_STREAM),
                                 ("Aux", aux, training.AUX_STREAM)):
        timestep = training.draw(models[0], images, config, training.step_seed(config.seed, 1, 0, stream)).timesteps
        snr = _published_snr(timestep).item()
        weight = min(snr, gamma) / (snr + 1 if family == "sd2_v" else snr)
        assert weighted.terms[term][0] == pytest.approx(weight * plain.terms[term][0], rel=1e-4), term


def test_several_crops_per_image_are_distinct_crops_of_that_image(sf, sd15):
    """crops_per_image random crops of one wide image: different places, each the VAE latent of the
    image (short side resized to the resolution) cut at its recorded corner."""
    from inst_styleforge.training_kit.images import resize_exact

    datasets, training = sf
    model, _, vae = sd15
    image = to_image_tensor(painting(3, (192, 64)))  # 192 wide, 64 high: crops slide along 129 columns
    config = training.StyleForgeConfig(**{**FAST, "crops_per_image": 3, "random_flip": False})
    with torch.inference_mode():
        encoded = training.encode_set(model, vae, datasets.from_batch(image), "zwx style", config,
                                      torch.Generator().manual_seed(0))
    assert encoded.views_per_image == 3 and len({s.crop_top_left for s in encoded.sizes}) == 3
    for size, latent in zip(encoded.sizes, encoded.latents):
        (top, left), (height, width) = size.crop_top_left, size.target
        pixels = resize_exact(image, *size.resized)[:, top:top + height, left:left + width]
        with torch.inference_mode():
            expected = model.model.process_latent_in(vae.encode(pixels)).float()
        torch.testing.assert_close(latent[None], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(encoded.latents[0], encoded.latents[1])
