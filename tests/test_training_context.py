"""comfy_adapter.training_context, which both trainers train inside: the UNet computes what it computes
when sampling, without storing attention matrices for backward, and every option it sets is restored."""

import torch

LATENT_SIDE = 16  # 128 px: 256 tokens in the UNet's attention


def _prediction(host, model, cond, latent):
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
    sigma = host.sigma_at(model, torch.tensor([500]))
    x = host.noised(model, latent, noise, sigma)
    return host.predict_denoised(model, x, sigma, host.model_inputs(model, cond, None, latent))


def test_training_attention_gives_the_sampling_prediction_without_storing_attention_matrices(pkg, sd15):
    import inst_styleforge.comfy_adapter as host

    model, clip, _ = sd15
    latent = torch.randn(1, 4, LATENT_SIDE, LATENT_SIDE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cond, _ = host.encode_tokens_for_training(clip, host.tokenize(clip, "zwx style"))
        sampling = _prediction(host, model, cond, latent)
    tokens = LATENT_SIDE * LATENT_SIDE
    saved_shapes = []

    def pack(tensor):
        saved_shapes.append(tuple(tensor.shape))
        return tensor

    with torch.inference_mode(), host.training_context(model, clip):
        x = latent.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            training = _prediction(host, model, cond.clone(), x)
        training.square().mean().backward()
    assert saved_shapes, "the forward saved tensors for backward"
    matrices = [s for s in saved_shapes if s[-2:] == (tokens, tokens)]
    assert not matrices, f"attention matrices kept for backward: {matrices[:3]}"
    torch.testing.assert_close(training.detach(), sampling, rtol=1e-4, atol=1e-4)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_training_context_restores_the_attention_options_and_keeps_a_users_override(pkg, sd15):
    import inst_styleforge.comfy_adapter as host

    model, clip, _ = sd15
    options = model.model_options.setdefault("transformer_options", {})
    before = dict(options)
    with torch.inference_mode(), host.training_context(model, clip):
        pass
    assert options == before

    def users_attention(func, *args, **kwargs):
        return func(*args, **kwargs)

    options[host.ATTENTION_OVERRIDE] = users_attention
    try:
        with torch.inference_mode(), host.training_context(model, clip):
            assert options[host.ATTENTION_OVERRIDE] is users_attention
        assert options[host.ATTENTION_OVERRIDE] is users_attention
    finally:
        del options[host.ATTENTION_OVERRIDE]
