"""host.trainable.training_context, which both trainers train inside: the UNet computes what it computes
when sampling, without storing attention matrices for backward, and every option it sets is restored."""

import pytest
import torch

LATENT_SIDE = 16  # 128 px: 256 tokens in the UNet's attention


def _prediction(host, model, cond, latent, pooled=None):
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
    sigma = host.diffusion.sigma_at(model, torch.tensor([500]))
    x = host.diffusion.noised(model, latent, noise, sigma)
    return host.diffusion.predict_denoised(model, x, sigma, host.diffusion.model_inputs(model, cond, pooled, latent))


def test_training_attention_gives_the_sampling_prediction_without_storing_attention_matrices(pkg, sd15):
    import inst_styleforge.host as host

    model, clip, _ = sd15
    latent = torch.randn(1, 4, LATENT_SIDE, LATENT_SIDE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cond, _ = host.text.encode_tokens_for_training(clip, host.text.tokenize(clip, "zwx style"))
        sampling = _prediction(host, model, cond, latent)
    tokens = LATENT_SIDE * LATENT_SIDE
    saved_shapes = []

    def pack(tensor):
        saved_shapes.append(tuple(tensor.shape))
        return tensor

    with torch.inference_mode(), host.trainable.training_context(model, clip):
        x = latent.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            training = _prediction(host, model, cond.clone(), x)
        training.square().mean().backward()
    assert saved_shapes, "the forward saved tensors for backward"
    matrices = [s for s in saved_shapes if s[-2:] == (tokens, tokens)]
    assert not matrices, f"attention matrices kept for backward: {matrices[:3]}"
    torch.testing.assert_close(training.detach(), sampling, rtol=1e-4, atol=1e-4)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_gradient_checkpointing_keeps_a_fraction_of_the_activations_and_gives_the_same_gradients(pkg, request,
                                                                                                 family):
    """With checkpointing on, autograd keeps only what the checkpointed UNet layers take in, and the
    backward recomputes the rest: the same input gradient as keeping everything (on SD1.5's UNet and on
    the SDXL family's, whose blocks are laid out differently)."""
    import inst_styleforge.host as host

    model, clip, _ = request.getfixturevalue(family)
    latent = torch.randn(1, 4, LATENT_SIDE, LATENT_SIDE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cond, pooled = host.text.encode_tokens_for_training(clip, host.text.tokenize(clip, "zwx style"))

    def saved_bytes_and_gradient(checkpointing: bool) -> tuple[int, torch.Tensor]:
        storages = {}

        def pack(tensor):
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.inference_mode(), host.trainable.training_context(model, clip, gradient_checkpointing=checkpointing):
            x = latent.clone().requires_grad_(True)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                prediction = _prediction(host, model, cond.clone(), x, pooled.clone())
            prediction.square().mean().backward()
        return sum(storages.values()), x.grad

    kept_all, gradient = saved_bytes_and_gradient(False)
    kept_checkpointed, checkpointed_gradient = saved_bytes_and_gradient(True)
    assert kept_checkpointed < 0.5 * kept_all, (kept_checkpointed, kept_all)
    torch.testing.assert_close(checkpointed_gradient, gradient, rtol=1e-5, atol=1e-7)


def test_training_context_restores_the_attention_options_and_keeps_a_users_override(pkg, sd15):
    import inst_styleforge.host as host

    model, clip, _ = sd15
    options = model.model_options.setdefault("transformer_options", {})
    before = dict(options)
    with torch.inference_mode(), host.trainable.training_context(model, clip):
        pass
    assert options == before

    def users_attention(func, *args, **kwargs):
        return func(*args, **kwargs)

    options[host.trainable.ATTENTION_OVERRIDE] = users_attention
    try:
        with torch.inference_mode(), host.trainable.training_context(model, clip):
            assert options[host.trainable.ATTENTION_OVERRIDE] is users_attention
        assert options[host.trainable.ATTENTION_OVERRIDE] is users_attention
    finally:
        del options[host.trainable.ATTENTION_OVERRIDE]


def test_a_text_encoder_stored_in_fp16_keeps_no_cast_copy_of_its_weights_for_backward(pkg, sd15):
    """ComfyUI keeps the text encoder in fp16 and casts each weight to fp32 in every forward (on the
    CPU); training must not keep those copies alive until backward."""
    import inst_styleforge.host as host
    from inst_styleforge.inst_core.style_prompt import StylePrompt

    _, clip, _ = sd15
    encoder = clip.cond_stage_model
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    stored = {m.weight.dtype for m in linears}
    assert stored == {torch.float16}, f"the fixture's text encoder layers are stored in {stored}"
    weight_bytes_fp32 = sum(m.weight.numel() * 4 for m in linears)
    saved_bytes = []

    def pack(tensor):
        saved_bytes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.inference_mode(), host.trainable.training_context(None, clip):
        token = torch.randn(1, 768, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            cond, _ = host.text.encode_tokens_for_training(clip, StylePrompt(clip, "*", "*", 1).tokens({"l": token}))
        cond.float().square().mean().backward()
    assert token.grad is not None and token.grad.abs().sum() > 0
    new_bytes = sum(saved_bytes) - sum(m.weight.numel() * 2 for m in linears)  # the stored weights are not new
    assert new_bytes < weight_bytes_fp32 / 4, (
        f"backward keeps {new_bytes / 2**20:.0f} MiB against {weight_bytes_fp32 / 2**20:.0f} MiB of fp32 weights")


def test_the_cast_linear_gives_comfyuis_own_output_and_input_gradient(pkg, sd15):
    import inst_styleforge.host as host

    _, clip, _ = sd15
    with torch.inference_mode(), host.trainable.training_context(None, clip):
        layer = clip.cond_stage_model.clip_l.transformer.text_model.encoder.layers[0].mlp.fc1
        assert layer.weight.dtype == torch.float16 and "forward" in vars(layer), "the training forward is set"
        x = torch.randn(2, 5, layer.in_features, generator=torch.Generator().manual_seed(0))
        results = []
        for forward in (layer.forward, layer.forward_comfy_cast_weights):  # ours, ComfyUI's
            leaf = x.clone().requires_grad_(True)
            out = forward(leaf)
            out.sin().sum().backward()
            results.append((out.detach(), leaf.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_running_out_of_memory_names_the_settings_to_change_and_leaves_the_model_usable(pkg, sd15, clip_vision):
    """Out-of-memory is raised by the allocator from inside the UNet; the hook raises the same error
    type from the same place, once, on the first forward that builds a graph (the first training step)."""
    from images_for_tests import painting_tensor
    from inst_styleforge.inst_core.training import InSTTrainingConfig, train_style
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd15
    unet = model.model.diffusion_model

    def allocation_fails(_module, _args):
        if torch.is_grad_enabled():
            handle.remove()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = unet.register_forward_pre_hook(allocation_fails)
    config = InSTTrainingConfig(steps=2, resolution=64, gradient_checkpointing="off")
    try:
        with torch.inference_mode():
            try:
                train_style(model, clip, vae, clip_vision, [painting_tensor()], config)
            except InputError as error:
                message = str(error)
            else:
                raise AssertionError("training went on after running out of memory")
    finally:
        handle.remove()
    for setting in ("Input 'resolution'", "64 px", "batch_size 1", "gradient_checkpointing off", "precision fp32",
                    "nothing was saved"):
        assert setting in message, f"{setting!r} missing from: {message}"
    patched = [m for m in [*unet.modules(), *clip.cond_stage_model.modules()] if "forward" in vars(m)]
    assert not patched, f"training forwards left in place: {patched[:3]}"
    with torch.inference_mode():
        result = train_style(model, clip, vae, clip_vision, [painting_tensor()], config)
    assert len(result.losses) == 2


def test_gradient_checkpointing_auto_turns_on_from_512_px_and_bad_values_name_the_input(pkg):
    from inst_styleforge.training_kit.errors import InputError
    from inst_styleforge.training_kit.memory import gradient_checkpointing_on

    assert [gradient_checkpointing_on("auto", r) for r in (256, 504, 512, 1024)] == [False, False, True, True]
    assert gradient_checkpointing_on("on", 64) and not gradient_checkpointing_on("off", 1024)
    try:
        gradient_checkpointing_on("True", 512)
    except InputError as error:
        assert "Input 'gradient_checkpointing'" in str(error)
    else:
        raise AssertionError("an unknown setting was accepted")


def test_training_encodes_images_a_few_pixels_at_a_time_to_the_latents_of_one_call(pkg, sd15, monkeypatch):
    """On the CPU ComfyUI would encode a whole image set in one VAE call, whose activations set a
    training run's peak above its steps' at 512 px: training caps each call at VAE_ENCODE_PIXELS, and
    the latents are those of one call."""
    import inst_styleforge.host as host

    _, _, vae = sd15
    images = torch.rand(3, 512, 512, 3, generator=torch.Generator().manual_seed(0))
    small = torch.rand(6, 128, 128, 3, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = vae.encode(images), vae.encode(small)
    encode, calls = vae.encode, []

    def counted(pixels):
        calls.append(len(pixels))
        return encode(pixels)

    monkeypatch.setattr(vae, "encode", counted)
    with torch.inference_mode():
        capped = host.images.vae_encode(vae, images), host.images.vae_encode(vae, small)
    assert calls == [1, 1, 1, 6]  # 512 px: one per call; 128 px: 16 fit in a call
    for one_call, in_parts in zip(whole, capped):
        torch.testing.assert_close(in_parts, one_call, rtol=1e-4, atol=1e-4)
