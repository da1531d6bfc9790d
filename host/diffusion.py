"""The diffusion model's own parameterisation: latent space, noise levels, its inputs and outputs.

Noise levels come from the MODEL's model sampling as ComfyUI samples with it: a node that patches it
(ModelSamplingSD3's shift, ModelSamplingDiscrete's v-prediction) is what training sees too."""

from __future__ import annotations

import comfy.model_sampling
import torch


def latent_to_model_space(model, latent: torch.Tensor) -> torch.Tensor:
    """VAE latent -> the space the UNet works in (e.g. x 0.18215 for SD1.x)."""
    return model.model.process_latent_in(latent)


def latent_from_model_space(model, latent: torch.Tensor) -> torch.Tensor:
    return model.model.process_latent_out(latent)


def _sampling(model):
    return model.get_model_object("model_sampling")


def num_timesteps(model) -> int:
    return int(_sampling(model).sigmas.shape[0])


def sigma_at(model, timesteps: torch.Tensor) -> torch.Tensor:
    """Noise level of training timesteps in ComfyUI's sigma space: integers 0 .. num_timesteps-1 (the
    model's own table, so distilled or continuous samplings give their own levels), or for flow models
    any timestep in that range (their sigma is a formula of it)."""
    sampling = _sampling(model)
    if is_flow_matching(model):
        return sampling.sigma(timesteps.to(sampling.sigmas.device).float())
    return sampling.sigmas[timesteps.to(sampling.sigmas.device).long()]


def is_flow_matching(model) -> bool:
    """Whether the model is trained by flow matching (SD3, SD3.5, FLUX.1): x_t = (1 - sigma) x_0 +
    sigma * noise, which ComfyUI calls the CONST parameterisation."""
    return isinstance(_sampling(model), comfy.model_sampling.CONST)


def flow_timesteps(model, t: torch.Tensor) -> torch.Tensor:
    """The model's timesteps of flow times `t` in (0, 1) before its shift: `sigma_at` of them is the
    shifted noise level s t / (1 + (s - 1) t) that ComfyUI's flow model sampling gives (Flux's is
    written e^mu / (e^mu + 1/t - 1), the same with s = e^mu). ComfyUI's flow samplings map a noise
    level to a timestep linearly (`timestep(sigma)`: sigma x 1000 for SD3, sigma for Flux), so mapping
    the unshifted t gives the timestep whose sigma is the shifted one."""
    return _sampling(model).timestep(t.float())


def timesteps_at(model, times: torch.Tensor) -> torch.Tensor:
    """The model's training timesteps at `times` in (0, 1) of its range: a UNet's discrete timestep
    (0.5 -> 500 of 1000), a flow model's timestep of that time before its shift (`flow_timesteps`)."""
    if is_flow_matching(model):
        return flow_timesteps(model, times)
    return (times.double() * num_timesteps(model)).round().long()


def flow_noise_scale(model) -> float:
    """What a flow model's sampling multiplies the noise by before mixing it in (x = (1 - sigma) x_0 +
    sigma * scale * noise): ComfyUI 0.38's `noise_scale`, 1 for SD3 and SD3.5; 0.3.75 has none (1)."""
    return float(getattr(_sampling(model), "noise_scale", 1.0))


def noised(model, latent: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return _sampling(model).noise_scaling(sigma, noise, latent)


def _size_kwargs(original: tuple[int, int], crop_top_left: tuple[int, int], target: tuple[int, int]) -> dict:
    """SDXL's size conditioning under the names ComfyUI's SDXL.encode_adm reads (width/height: the original)."""
    (height, width), (crop_h, crop_w), (target_height, target_width) = original, crop_top_left, target
    return {"height": height, "width": width, "crop_h": crop_h, "crop_w": crop_w, "target_height": target_height,
            "target_width": target_width}


def model_inputs(model, cond: torch.Tensor, pooled: torch.Tensor | None, latent: torch.Tensor,
                 sizes: list | None = None, guidance: float | None = None) -> dict:
    """Keyword inputs of `apply_model` for this family: cross-attention, and SDXL's pooled output with
    each sample's size conditioning (`sizes`: objects with `original`, `crop_top_left` and `target`
    (height, width) pairs; without them, the latent's own size and no crop, which is what stock
    sampling passes), and a guidance-distilled model's (FLUX.1 [dev]) guidance scale (None: ComfyUI's
    default). Families without size conditioning ignore `sizes`, those without a guidance input
    `guidance`."""
    side = (latent.shape[-2] * 8, latent.shape[-1] * 8)
    geometry = [(side, (0, 0), side)] * latent.shape[0] if sizes is None else [
        (size.original, size.crop_top_left, size.target) for size in sizes]
    groups = [slice(None)] if len(set(geometry)) == 1 else [slice(i, i + 1) for i in range(latent.shape[0])]
    inputs = []
    for rows in groups:
        conds = model.model.extra_conds(cross_attn=cond[rows], pooled_output=None if pooled is None else pooled[rows],
                                        noise=latent[rows], device=latent.device,
                                        **({} if guidance is None else {"guidance": guidance}),
                                        **_size_kwargs(*geometry[rows][0]))
        inputs.append({name: c.cond for name, c in conds.items()})
    return {name: torch.cat([i[name] for i in inputs]) for name in inputs[0]}


def predict_denoised(model, x: torch.Tensor, sigma: torch.Tensor, inputs: dict) -> torch.Tensor:
    options = model.model_options.get("transformer_options", {})
    return model.model.apply_model(x, sigma, transformer_options=dict(options), **inputs)


def denoised_from_output(model, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The denoised estimate ComfyUI derives from a raw model output (epsilon, v, ...) at `x`."""
    return _sampling(model).calculate_denoised(sigma, output, x)


def is_v_prediction(model) -> bool:
    return isinstance(_sampling(model), comfy.model_sampling.V_PREDICTION)


def timestep_sigmas(model) -> torch.Tensor:
    """Sigma of every discrete training timestep (index t), as a CPU tensor."""
    return _sampling(model).sigmas.float().cpu()
