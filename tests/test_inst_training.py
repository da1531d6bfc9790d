"""InST style inversion in-process on the tiny SD1.5 + CLIP ViT-L/14, loaded as the server loads them."""

import dataclasses

import pytest
import torch
from frozen_weights import changed_weights, snapshot
from images_for_tests import painting_tensor

FAST = dict(steps=12, resolution=64, learning_rate=1e-3)


@pytest.fixture(scope="module")
def inst(pkg):
    from inst_styleforge.inst_core import training

    return training


def test_training_lowers_the_fixed_evaluation_loss_and_changes_only_the_encoder(inst, sd15, clip_vision):
    model, clip, vae = sd15
    frozen = {"unet": model.model, "text": clip.cond_stage_model, "vae": vae.first_stage_model,
              "vision": clip_vision.model}
    before = snapshot(frozen)
    with torch.inference_mode():
        result = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()],
                                  inst.InSTTrainingConfig(**FAST))
    assert result.eval_after < result.eval_before
    assert len(result.losses) == FAST["steps"] and all(torch.isfinite(torch.tensor(result.losses)))
    assert changed_weights(before, frozen) == []
    assert result.trained.spec.training["painting_sha256"]


def test_patch_token_attention_several_paintings_and_vectors_train(inst, sd15, clip_vision):
    from inst_styleforge.inst_core.style import ImageFeatures

    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**dict(FAST, steps=3), attend_to="patch_tokens", vectors_per_token=2, batch_size=2)
    with torch.inference_mode():
        result = inst.train_style(model, clip, vae, clip_vision, [painting_tensor(0), painting_tensor(1)], config)
        outputs = [clip_vision.encode_image(painting_tensor(i)) for i in (0, 1)]
    assert result.trained.spec.context_dim == 1024
    vectors = [result.trained.vectors(ImageFeatures.from_clip_vision_output(o))["l"] for o in outputs]
    assert vectors[0].shape == (1, 2, 768)
    assert not torch.allclose(vectors[0], vectors[1]), "each painting has its own token"
    assert all(p.grad is None for p in result.trained.parameters()), "gradients are released after training"


def test_paper_encoder_is_degenerate_and_patch_tokens_are_not(pkg):
    from inst_styleforge.inst_core.style_encoder import StyleEncoder

    def grad_ratio(attention) -> float:
        """How much gradient the key projection gets, relative to the value projection."""
        return float(attention.to_k.weight.grad.abs().max() / attention.to_v.weight.grad.abs().max())

    embed = torch.randn(1, 768)
    paper = StyleEncoder(768, 768, dropout=0.0)
    paper(embed).sum().backward()
    assert grad_ratio(paper.attn1) < 1e-5 and grad_ratio(paper.attn2) < 1e-5  # softmax over one key is 1
    patches = StyleEncoder(768, 768, dropout=0.0, context_dim=1024)
    patches(embed, torch.randn(1, 257, 1024)).sum().backward()
    assert grad_ratio(patches.attn2) > 1e-3


def test_nan_loss_stops_training_with_a_clear_message(inst, sd15, clip_vision, monkeypatch):
    from inst_styleforge.training_kit.errors import InputError
    from inst_styleforge.training_kit.input_rules import Range

    # a learning rate far above any the node allows is the quickest way to a non-finite loss (on a GPU,
    # fp16 overflow gets there within the range)
    monkeypatch.setitem(inst.RANGES, "learning_rate", Range(0.0, 1e30))
    model, clip, vae = sd15
    config = dataclasses.replace(inst.InSTTrainingConfig(**FAST), learning_rate=1e30, steps=6)
    with torch.inference_mode(), pytest.raises(InputError, match="learning_rate.*loss became"):
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config)


def test_tiny_or_empty_paintings_are_refused_by_name(inst, sd15, clip_vision):
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**FAST)
    with pytest.raises(InputError, match="'painting'.*1x1 pixels"):
        inst.train_style(model, clip, vae, clip_vision, [torch.rand(1, 1, 1, 3)], config)
    with pytest.raises(InputError, match="'painting'.*empty"):
        inst.train_style(model, clip, vae, clip_vision, [torch.rand(0, 64, 64, 3)], config)


def test_cpu_autocast_is_refused(inst, sd15, clip_vision):
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**dict(FAST, steps=1), precision="bf16")
    with torch.inference_mode(), pytest.raises(InputError, match="'precision'"):
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config)


def test_a_model_of_another_family_is_refused_by_name(inst, sd15, clip_vision, tiny_models):
    import comfy.sd
    from inst_styleforge.training_kit.errors import InputError

    _, clip, vae = sd15
    with torch.inference_mode():
        pix2pix = comfy.sd.load_diffusion_model(str(tiny_models["tiny_sd15_pix2pix_unet"]))
    with pytest.raises(InputError, match="Input 'model': is a SD15_instructpix2pix model; this node needs a Stable "
                                         "Diffusion model: an SD1.x, SD2.x or SDXL UNet, or SD3/SD3.5's MMDiT"):
        inst.train_style(pix2pix, clip, vae, clip_vision, [painting_tensor()], inst.InSTTrainingConfig(**FAST))


def test_fp16_autocast_scales_the_loss_so_gradients_fp16_would_flush_to_zero_survive(inst, sd15, clip_vision):
    """InST's loss under fp16 autocast, shrunk until its gradients fall below fp16's smallest number:
    backward alone flushes every encoder gradient to zero; through the precision's scaler (the one
    train_style steps with) they survive, pointing where the same loss's fp32 gradients point."""
    import inst_styleforge.host as host
    from inst_styleforge.inst_core.style_prompt import StylePrompt
    from inst_styleforge.training_kit.precision import Precision

    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**FAST)
    shrink = 1e-4  # measured: from 1e-3 of this loss down, fp16 backward flushes every encoder gradient
    with torch.inference_mode():
        data = inst.prepare_paintings(model, vae, clip_vision, [painting_tensor()], FAST["resolution"])
    with torch.inference_mode(), host.trainable.training_context(model, clip):
        style = inst.new_style(model, clip, data, config).eval()  # no dropout: the three runs see one function
        prompt = StylePrompt(clip, "*", "*", 1)
        latents, features, sizes = data.batch([0], [0])
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        optimizer = torch.optim.SGD(style.parameters(), lr=0.0)

        def loss_of(precision: Precision) -> torch.Tensor:
            with precision.autocast():
                return inst.denoising_loss(model, clip, style, prompt, latents, features, sizes, torch.tensor([500]),
                                           noise).mean() * shrink

        def gradients(backward) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=False)
            backward()
            return torch.cat([p.grad.flatten() for p in style.parameters()])

        fp16 = Precision("cpu", torch.float16)
        assert fp16.grad_scaler().is_enabled() and not Precision("cpu", None).grad_scaler().is_enabled()
        scaler = fp16.grad_scaler()
        loss = loss_of(fp16)  # one forward, backpropagated as it is and through the scaler
        flushed = gradients(lambda: loss.backward(retain_graph=True))
        scaled = gradients(lambda: (scaler.scale(loss).backward(), scaler.unscale_(optimizer)))
        reference = gradients(lambda: loss_of(Precision("cpu", None)).backward())  # fp32: nothing flushes
    assert flushed.abs().max() == 0, "without scaling, fp16 loses every gradient"
    assert reference.abs().max() > 0
    # fp16 rounds the backward differently from fp32, so the direction is compared, not every bit
    assert torch.nn.functional.cosine_similarity(scaled, reference, dim=0) > 0.99


def test_continuing_a_saved_style_ends_where_one_longer_run_ends(inst, sd15, clip_vision, tmp_path):
    from inst_styleforge.inst_core.style_file import load_style

    model, clip, vae = sd15
    config = dict(FAST, steps=4)
    saved = tmp_path / "half.safetensors"
    with torch.inference_mode():
        whole = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], inst.InSTTrainingConfig(**config))
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()],
                         inst.InSTTrainingConfig(**dict(config, steps=2)), save_to=saved)
        assert saved.with_suffix(".optimizer").exists()
        continued = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()],
                                     inst.InSTTrainingConfig(**config), continue_from=load_style(saved))
    assert continued.start_step == 2 and len(continued.losses) == 2
    assert continued.losses == pytest.approx(whole.losses[2:], rel=1e-5)
    continued_weights = continued.trained.state_dict()
    worst = max((continued_weights[k] - v).abs().max().item() for k, v in whole.trained.state_dict().items())
    assert worst <= 1e-6, worst
    assert continued.trained.spec.training["steps"] == 4


def test_continuing_needs_more_steps_than_the_saved_style_has(inst, sd15, clip_vision, tmp_path):
    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import load_style, save_style
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd15
    saved = save_style(InSTStyle(StyleSpec(family="SD15", token_widths={"l": 768}, image_dim=768,
                                           training={"steps": 2})), tmp_path / "done.safetensors")
    config = inst.InSTTrainingConfig(**dict(FAST, steps=2))
    with torch.inference_mode():
        with pytest.raises(InputError, match="Input 'steps': is 2, but 'continue_from' has already been trained"):
            inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config,
                             continue_from=load_style(saved))


def test_a_style_that_cannot_be_written_after_training_is_an_error_on_filename_that_says_nothing_was(
        inst, sd15, clip_vision, tmp_path):
    from inst_styleforge.training_kit.errors import InputError
    from locked_folders import immutable

    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**dict(FAST, steps=1))
    with immutable(tmp_path), torch.inference_mode(), pytest.raises(InputError, match=(
            rf"^Input 'filename': could not write style.safetensors to {tmp_path} \(Operation not permitted\)\. The "
            r"trained style was not saved \(nothing was written\); the same seed trains it again\.")):
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config,
                         save_to=tmp_path / "style.safetensors")
    assert list(tmp_path.iterdir()) == []
