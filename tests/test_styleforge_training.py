"""StyleForge in-process on the tiny SD1.5, loaded as the server loads it: the loss, what changes,
the hook/stock-merge equivalence, checkpoints and resume."""

import dataclasses

import pytest
import torch
from frozen_weights import changed_weights, snapshot
from images_for_tests import to_image_tensor

from devhost.example_inputs import painting, person

FAST = dict(steps=4, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0)


@pytest.fixture(scope="module")
def sf(pkg):
    from inst_styleforge.styleforge_core import datasets, training

    return datasets, training


@pytest.fixture(scope="module")
def sets(sf):
    datasets, training = sf
    style = datasets.from_batch(torch.cat([to_image_tensor(painting(s, (64, 64))) for s in range(3)]))
    aux = datasets.from_batch(torch.cat([to_image_tensor(person(10 + s)) for s in range(4)]))
    return training.TrainingSets(style, aux)


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


@pytest.mark.parametrize("passes", ["one batch", "separate"])
def test_each_step_backpropagates_styleref_mse_plus_lambda_times_aux_mse(sf, sd15, sets, passes):
    """The step's gradients equal those of MSE_ref + lambda * MSE_aux computed independently (the kit's
    prediction MSE on the step's two draws, one autograd call), for a lambda other than 1."""
    import inst_styleforge.comfy_adapter as host
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse
    from inst_styleforge.training_kit.precision import Precision

    training = sf[1]
    model, clip, vae = sd15
    aux_weight = 2.5
    config = training.StyleForgeConfig(**{**FAST, "aux_weight": aux_weight, "passes": passes})
    with torch.inference_mode():
        components, aux_set = training.prepare_components(model, vae, sets, config, torch.Generator().manual_seed(0))
    with torch.inference_mode(), host.training_context(model, clip):
        targets = lora_targets(model, clip, include_conv=False, include_text_encoder=False)
        network = LoRANetwork(targets, config.rank, config.alpha, seed=0)
        for adapter in network.adapters.values():
            torch.nn.init.normal_(adapter.up.weight, std=0.01)  # non-zero, so every weight gets a gradient
        params = list(network.parameters())
        with network.attached(targets):
            conditioner = training.TextConditioner(clip, host.compute_device(model), frozen=True)
            precision = Precision("cpu", None)
            step = training.accumulate_gradients(model, conditioner, precision, precision.grad_scaler(), components,
                                                 aux_set, config, step=1)
            ours = [p.grad.clone() for p in params]

            def mse(images, stream):
                d = training.draw(model, images, config, training.step_seed(config.seed, 1, 0, stream))
                with torch.no_grad():
                    cond, pooled = host.encode_tokens_for_training(clip, host.tokenize(clip, d.prompts[0]))
                return prediction_mse(model, d.latents, d.noise, host.sigma_at(model, d.timesteps), cond,
                                      pooled).mean()

            mse_ref = mse(components[0].images, training.STYLEREF_STREAM)
            mse_aux = mse(aux_set, training.AUX_STREAM)
            expected = torch.autograd.grad(mse_ref + aux_weight * mse_aux, params)
    assert step.styleref == pytest.approx(mse_ref.item(), rel=1e-5)
    assert step.aux == pytest.approx(mse_aux.item(), rel=1e-5)
    assert step.loss == pytest.approx(mse_ref.item() + aux_weight * mse_aux.item(), rel=1e-5)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_hooked_adapters_compute_what_stock_lora_loading_merges(pkg, sd15):
    """The trainer trains through forward hooks; stock LoraLoader merges W + alpha/rank * up @ down. With
    random (non-zero) adapters on linears, convolutions and the text encoder, both give the same outputs:
    the UNet (fp32 weights on the CPU) to float rounding; the text encoder, whose weights this checkpoint
    keeps in fp16, up to the fp16 rounding of the merged weights (well under 5% of the adapters' effect)."""
    import inst_styleforge.comfy_adapter as host
    from inst_styleforge.styleforge_core.lora import LoRANetwork
    from inst_styleforge.styleforge_core.lora_targets import lora_targets

    model, clip, vae = sd15
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
    sigma = host.sigma_at(model, torch.tensor([500]))

    def text(c):
        return host.encode_tokens_for_training(c, host.tokenize(c, "zwx style"))

    def prediction(m, cond, pooled):
        x = host.noised(m, latent, noise, sigma)
        return host.predict_denoised(m, x, sigma, host.model_inputs(m, cond, pooled, latent))

    with torch.inference_mode(), host.training_context(model, clip), torch.no_grad():
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
        merged_model, merged_clip = host.apply_lora(model, clip, state)
    with torch.inference_mode(), host.training_context(merged_model, merged_clip), torch.no_grad():  # loads patches
        merged = text(merged_clip)[0], prediction(merged_model, cond, pooled)
    effects = [(h - b).abs().max() for h, b in zip(hooked, base)]
    assert min(effects) > 1e-3, "the adapters change both outputs"
    assert (hooked[0] - merged[0]).abs().max() < 0.05 * effects[0]
    assert torch.allclose(hooked[1], merged[1], atol=1e-4, rtol=1e-4), (hooked[1] - merged[1]).abs().max()


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
    restart the moments and the LoRA differs. The CLIP stops at its penultimate layer (as SD2, SDXL's
    CLIP-L and many SD1.5 models do), so the last layer's adapters get no gradient and no AdamW state."""
    training = sf[1]
    from inst_styleforge.styleforge_core.lora_file import load_lora
    from inst_styleforge.training_kit.optimizer_state import state_path

    model, clip, vae = sd15
    clip = clip.clone()
    clip.clip_layer(-2)
    sd15 = (model, clip, vae)
    config = training.StyleForgeConfig(**{**FAST, "steps": 2, "checkpoint_every": 2, "text_encoder_lr": 1e-3})
    path = tmp_path / "ckpt.safetensors"
    with torch.inference_mode():
        training.train_styleforge(model, clip, vae, sets, config, checkpoint_path=path)
    checkpoint = load_lora(path, "resume_from")
    assert checkpoint.steps == 2 and state_path(path).exists() and not list(tmp_path.glob(".*"))
    straight = _train(training, sd15, sets, steps=4, text_encoder_lr=1e-3)

    def resume():
        with torch.inference_mode():
            return training.train_styleforge(model, clip, vae, sets, dataclasses.replace(config, steps=4, rank=8),
                                             resume=load_lora(path, "resume_from"))

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


def test_separate_passes_give_the_same_losses_and_lora(sf, sd15, sets):
    training = sf[1]
    batched = _train(training, sd15, sets, steps=2, passes="one batch")
    separate = _train(training, sd15, sets, steps=2, passes="separate")
    assert separate.terms["StyleRef"] == pytest.approx(batched.terms["StyleRef"], rel=1e-4)
    assert separate.terms["Aux"] == pytest.approx(batched.terms["Aux"], rel=1e-4)
    for key, value in batched.trained.tensors.items():
        # Adam normalises each gradient, so float summation-order differences show at ~1e-6
        torch.testing.assert_close(separate.trained.tensors[key], value, rtol=1e-3, atol=1e-5)


def test_gradient_checkpointing_trains_the_same_lora(sf, sd15, sets):
    """The adapters' hooks run again when a checkpointed layer is recomputed in backward: the
    gradients, and so the LoRA, are those of a run that keeps every activation."""
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
