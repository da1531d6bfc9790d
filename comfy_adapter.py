"""Every call into ComfyUI's internals (`comfy.*`, `folder_paths`, the server) and every ComfyUI data
layout the cores take apart (tokenizer output, CONDITIONING, LATENT, CLIP_VISION_OUTPUT, NOISE) goes
through here, and nothing else does (IMAGE is a plain (B, H, W, C) tensor, checked in
training_kit/images.py): the cores and the training kit use only these functions, so a
ComfyUI upgrade that moves an internal touches one file. The node API (`comfy_api.latest`) is public
and used directly by `nodes/`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import comfy.clip_model
import comfy.clip_vision
import comfy.ldm.modules.attention
import comfy.lora
import comfy.model_management
import comfy.model_sampling
import comfy.ops
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.utils
import folder_paths
import numpy as np
import torch
import torch.utils.checkpoint
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
from PIL import Image

from .training_kit.errors import InputError
from .training_kit.images import SampleSize

# Model families whose UNet takes text cross-attention the way InST and StyleForge need.
STABLE_DIFFUSION_FAMILIES = ("SD15", "SD20", "SD21UnclipL", "SD21UnclipH", "SDXL", "SDXLRefiner", "SSD1B",
                             "Segmind_Vega", "KOALA_700M", "KOALA_1B")
PREVIEW_MAX_SIDE = 512
# ComfyUI attention functions whose autograd graph keeps the full attention matrix.
MATRIX_ATTENTION = ("attention_sub_quad", "attention_split", "attention_basic")
ATTENTION_OVERRIDE = "optimized_attention_override"  # transformer_options key read by comfy's wrap_attn
# How out-of-memory reads where it is a plain RuntimeError: the CPU allocator, Apple's MPS, CUDA (older torch).
OUT_OF_MEMORY_TEXTS = ("DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory",
                       "CUDA out of memory")
# The most pixels one VAE call encodes for training (one 512 px view, four 256 px ones). ComfyUI sizes
# its encode batches by free memory, which on the CPU is the free RAM: a whole image set in one call
# set a StyleForge run's peak above its steps' (bench/styleforge_bench.py reports both peaks).
VAE_ENCODE_PIXELS = 512 * 512


# ---- models and families -------------------------------------------------------------------------

def model_family(model) -> str:
    """ComfyUI's name for the loaded model's architecture ("SD15", "SDXL", "Flux", ...)."""
    return type(model.model.model_config).__name__


def require_stable_diffusion(model, input_name: str = "model") -> str:
    family = model_family(model)
    if family not in STABLE_DIFFUSION_FAMILIES or not isinstance(model.model.diffusion_model, UNetModel):
        raise InputError(input_name, f"is a {family} model; this node needs a Stable Diffusion UNet "
                         "(SD1.x, SD2.x or SDXL).", "Load an SD checkpoint with Load Checkpoint.")
    return family


def unet_context_width(model) -> int:
    return int(model.model.model_config.unet_config["context_dim"])


def text_encoder_widths(clip) -> dict[str, int]:
    """Token-embedding width of each text encoder, keyed as ComfyUI's tokenizer keys them ("l", "g", "h")."""
    widths = {}
    for key in clip.tokenize("").keys():
        encoder = getattr(clip.cond_stage_model, f"clip_{key}", None)
        if encoder is None:
            raise InputError("clip", f"has a text encoder '{key}' this package does not know.",
                             "Use the CLIP output of an SD1.x, SD2.x or SDXL checkpoint.")
        widths[key] = int(encoder.transformer.get_input_embeddings().weight.shape[1])
    return widths


def require_matching_clip(model, clip) -> dict[str, int]:
    widths = text_encoder_widths(clip)
    if sum(widths.values()) != unet_context_width(model):
        raise InputError("clip", f"gives {sum(widths.values())}-wide text features but the model expects "
                         f"{unet_context_width(model)}.", "Use the CLIP loaded from the same checkpoint as the model.")
    return widths


# ---- text ----------------------------------------------------------------------------------------

def tokenize(clip, text: str) -> dict:
    return clip.tokenize(text)


def token_ids(clip, key: str, text: str) -> list[int]:
    """The tokenizer's ids for `text` alone, without start, end and padding tokens."""
    tokenizer = getattr(clip.tokenizer, f"clip_{key}")
    special = {tokenizer.start_token, tokenizer.end_token, tokenizer.pad_token}
    return [t for t, _ in clip.tokenize(text)[key][0] if isinstance(t, int) and t not in special]


def token_slots(tokens: dict, key: str, token_id: int) -> list[tuple[int, int]]:
    """(chunk, position) of every `token_id` in text encoder `key`'s part of a tokenizer output."""
    return [(c, i) for c, chunk in enumerate(tokens[key]) for i, token in enumerate(chunk) if token[0] == token_id]


def with_token_embeddings(tokens: dict, slots: dict[str, list[tuple[int, int]]],
                          embeddings: dict[str, list[torch.Tensor]]) -> dict:
    """A copy of a tokenizer output whose token at each slot is an embedding vector instead (where a
    textual-inversion `embedding:NAME` puts its vectors); each slot keeps its weight."""
    out = {}
    for key, chunks in tokens.items():
        filled = [list(chunk) for chunk in chunks]
        for (c, i), vector in zip(slots.get(key, []), embeddings.get(key, [])):
            filled[c][i] = (vector, *filled[c][i][1:])
        out[key] = filled
    return out


def conditioning_widths(conditioning: list) -> list[int]:
    """Width of the text features of each entry of a CONDITIONING."""
    return [int(cond.shape[-1]) for cond, _ in conditioning]


def encode_tokens(clip, tokens: dict) -> list:
    """CONDITIONING exactly as stock CLIPTextEncode makes it (tensor embeddings in `tokens` included)."""
    return clip.encode_from_tokens_scheduled(tokens)


def encode_tokens_for_training(clip, tokens: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cross-attention features, pooled) with gradient flowing back into tensor embeddings: what
    `CLIP.encode_from_tokens` computes, without its model-management load on every call. Inside
    `training_context` the text encoder is already loaded in full (`load_for_training`); a load per step
    would ask ComfyUI to free memory for it each time (on a small card, by offloading part of the UNet
    mid-run)."""
    encoder = clip.cond_stage_model
    encoder.reset_clip_options()
    if clip.layer_idx is not None:
        encoder.set_clip_options({"layer": clip.layer_idx})
    cond, pooled = encoder.encode_token_weights(tokens)[:2]
    return cond, pooled


class _PatchedForwards:
    """Instance forwards set for training, and what each module had before (usually nothing: the
    class's forward; possibly another extension's instance forward), put back by `restore`."""

    def __init__(self):
        self.previous: list[tuple[torch.nn.Module, object]] = []

    def set(self, module: torch.nn.Module, forward) -> None:
        self.previous.append((module, vars(module).get("forward")))
        module.forward = forward

    def restore(self) -> None:
        for module, previous in reversed(self.previous):
            if previous is None:
                vars(module).pop("forward", None)
            else:
                module.forward = previous
        self.previous.clear()


def _out_of_place_clip_layer(layer, patches: _PatchedForwards) -> None:
    """ComfyUI's CLIPLayer adds its residuals in place, which autograd cannot differentiate through.
    Its attention is the fused one when the host picked one that keeps the attention matrix for
    backward (ComfyUI's CPU default for text encoders is basic attention): the same values."""
    def forward(x, mask=None, optimized_attention=None):
        if getattr(optimized_attention, "__name__", "") in MATRIX_ATTENTION:
            optimized_attention = comfy.ldm.modules.attention.get_attention_function("pytorch")
        x = x + layer.self_attn(layer.layer_norm1(x), mask, optimized_attention)
        return x + layer.mlp(layer.layer_norm2(x))

    patches.set(layer, forward)


class _LinearCastInForward(torch.autograd.Function):
    """`linear(x, weight.to(x.dtype), bias)` for a frozen weight stored in another dtype, keeping the
    stored weight for backward instead of the cast copy. ComfyUI's cast layers (a text encoder kept
    in fp16 and run in fp32) make a new copy in every forward, and autograd would keep each copy
    until backward: with SDXL's two text encoders, several GB per prompt batch."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return torch.nn.functional.linear(rows, weight.to(rows.device, rows.dtype),
                                          None if bias is None else bias.to(rows.device, rows.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return grad @ weight.to(grad.device, grad.dtype), None, None

    @classmethod
    def linear(cls, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        # 2-D inside the Function: its output is then a new tensor, not a view, so a LoRA hook may add
        # to it in place
        out = cls.apply(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
        return out.view(*x.shape[:-1], out.shape[-1])


def _plain_cast_linear(layer: torch.nn.Module) -> bool:
    """A ComfyUI Linear that casts its weight in forward and does nothing else to it (scaled-fp8 and
    other quantised layers compute more than a cast, and keep their own forward)."""
    plain_cast = comfy.ops.disable_weight_init.Linear.forward_comfy_cast_weights
    return (isinstance(layer, comfy.ops.CastWeightBiasOp) and isinstance(layer, torch.nn.Linear)
            and layer.comfy_cast_weights and getattr(layer, "scale_weight", None) is None
            and type(layer).forward_comfy_cast_weights is plain_cast)


def _cast_linears(module: torch.nn.Module, patches: _PatchedForwards) -> None:
    """Give `module`'s plain cast Linear layers a forward that keeps only the stored weight for
    backward. A layer that gets patch functions later (ComfyUI's low-VRAM offload) uses its own."""
    for layer in module.modules():
        if _plain_cast_linear(layer):
            def forward(x, layer=layer, own=layer.forward):
                if layer.weight_function or layer.bias_function:
                    return own(x)
                return _LinearCastInForward.linear(layer, x)

            patches.set(layer, forward)


def _make_autograd_ready(module: torch.nn.Module) -> None:
    """Weights loaded inside the executor are inference tensors, which autograd refuses to save for
    backward. Replace them, one at a time, with ordinary copies: same values, and each original is
    freed before the next copy is made, so the peak is one weight above the model, not two models."""
    for name in [name for name, _ in module.named_parameters()]:
        param = module.get_parameter(name)
        if param.is_inference():
            comfy.utils.set_attr_param(module, name, param.detach().clone())
        del param
    for name in [name for name, _ in module.named_buffers()]:
        buffer = module.get_buffer(name)
        if buffer.is_inference():
            comfy.utils.set_attr(module, name, buffer.detach().clone())
        del buffer


def _options_copied(values):
    """Dict arguments (ComfyUI's `transformer_options`) copied, other values as they are."""
    if isinstance(values, dict):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    return tuple(dict(v) if isinstance(v, dict) else v for v in values)


def _checkpoint_forward(module: torch.nn.Module, patches: _PatchedForwards) -> None:
    """Recompute the layer's activations in backward instead of keeping them (less memory, one more
    forward). The forward and its recompute each start from the options dicts as they were at the
    call: ComfyUI moves `transformer_options` on (block, transformer index) as the UNet's forward goes,
    and a user's per-block patches look them up."""
    forward = module.forward

    def run(*args, **kwargs):
        return forward(*_options_copied(args), **_options_copied(kwargs))

    def checkpointed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(run, *_options_copied(args), use_reentrant=False,
                                                 **_options_copied(kwargs))

    patches.set(module, checkpointed)


def _checkpoint_unet(unet: torch.nn.Module, patches: _PatchedForwards) -> None:
    """Checkpoint every layer of every UNet block. The layers, not the blocks: ComfyUI's UNet runs a
    block by calling its layers one by one (`forward_timestep_embed`), never the block's forward.
    Some UNets (KOALA) have no middle block."""
    for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        for layer in block if block is not None else ():
            _checkpoint_forward(layer, patches)


def _fused_attention(_host_attention, *args, **kwargs):
    return comfy.ldm.modules.attention.get_attention_function("pytorch")(*args, **kwargs)


@contextlib.contextmanager
def memory_efficient_attention(model) -> Iterator[None]:
    """Train through torch's fused scaled-dot-product attention when the host's attention keeps the
    (tokens x tokens) probability matrix for backward. ComfyUI picks sub-quadratic attention on the
    CPU, which saves memory when sampling but, under autograd, stores every layer's full attention
    matrix: about 40% of the UNet's saved activations at 256 px. Same values; an override the user
    has set (e.g. a sage-attention node) is left alone."""
    options = model.model_options.setdefault("transformer_options", {})
    host_attention = comfy.ldm.modules.attention.optimized_attention.__name__
    if ATTENTION_OVERRIDE in options or host_attention not in MATRIX_ATTENTION:
        yield
        return
    options[ATTENTION_OVERRIDE] = _fused_attention
    try:
        yield
    finally:
        del options[ATTENTION_OVERRIDE]


def hand_back_memory() -> None:
    """Return what training freed to the device and the OS: ComfyUI empties the GPU's cache; on Linux,
    glibc keeps freed CPU memory for reuse unless asked to trim it, so the process would stay at its
    training peak for every node that runs after."""
    gc.collect()
    comfy.model_management.soft_empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def is_out_of_memory(error: BaseException) -> bool:
    """The device (ComfyUI's OOM exception: CUDA's out-of-memory error) or the CPU allocator ran out."""
    return (comfy.model_management.OOM_EXCEPTION is not Exception
            and isinstance(error, comfy.model_management.OOM_EXCEPTION)) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in OUT_OF_MEMORY_TEXTS))


def free_memory_after_out_of_memory() -> None:
    """What ComfyUI's executor does after an out-of-memory error (unload every model), then hand back."""
    comfy.model_management.unload_all_models()
    hand_back_memory()


def load_for_training(model=None, clip=None) -> None:
    """The frozen models fully on the compute device with ordinary (non-inference) weights, every other
    model unloaded (`memory_required=1e20`: ComfyUI's model management does not know how much memory
    training's activations take). `training_context` does this on entry; a validation round calls it
    again, since its sampling, decoding and scoring may have offloaded part of the models to make room."""
    patchers = [p for p in (model, clip.patcher if clip is not None else None) if p is not None]
    with torch.inference_mode(False):
        comfy.model_management.load_models_gpu(patchers, memory_required=1e20, force_full_load=True)
        for patcher in patchers:
            _make_autograd_ready(patcher.model)
            patcher.model.requires_grad_(False)


@contextlib.contextmanager
def training_context(model=None, clip=None, gradient_checkpointing: bool = False) -> Iterator[None]:
    """Load the frozen models for autograd: full load on the compute device, ordinary (non-inference)
    weights, gradients enabled, out-of-place CLIP layers so gradients can cross the text encoder, and
    attention that does not store its matrix.

    Text encoders kept in another dtype than they compute in (fp16 weights, fp32 compute on the CPU)
    keep only their stored weights for backward, not a cast copy per forward.

    Restored on exit: every forward and option patched here, and the memory training freed is handed
    back. Kept: the autograd-ready weights (the same values as ordinary tensors; sampling uses them as
    it used the originals). On entry every other model is unloaded from the compute device
    (`load_for_training`): a trainer that runs out of memory mid-run loses the run, while an unloaded
    model is only reloaded by the next node that needs it."""
    patches = _PatchedForwards()
    with torch.inference_mode(False), torch.enable_grad(), contextlib.ExitStack() as restore:
        restore.callback(hand_back_memory)  # last, after everything else is restored
        load_for_training(model, clip)
        restore.callback(patches.restore)
        if clip is not None:
            for layer in clip.cond_stage_model.modules():
                if isinstance(layer, comfy.clip_model.CLIPLayer):
                    _out_of_place_clip_layer(layer, patches)
            _cast_linears(clip.cond_stage_model, patches)
        if model is not None:
            restore.enter_context(memory_efficient_attention(model))
            if gradient_checkpointing:
                _checkpoint_unet(model.model.diffusion_model, patches)
        yield


# ---- diffusion -----------------------------------------------------------------------------------

def compute_device(model) -> torch.device:
    return model.load_device


def compute_dtype(model) -> torch.dtype:
    """The dtype the UNet computes in: ComfyUI casts its inputs to it (the weights' dtype, or the
    manual-cast dtype when the weights are stored in one the device cannot compute in)."""
    return model.model.manual_cast_dtype or model.model.get_dtype()


def latent_to_model_space(model, latent: torch.Tensor) -> torch.Tensor:
    """VAE latent -> the space the UNet works in (e.g. x 0.18215 for SD1.x)."""
    return model.model.process_latent_in(latent)


def latent_from_model_space(model, latent: torch.Tensor) -> torch.Tensor:
    return model.model.process_latent_out(latent)


def num_timesteps(model) -> int:
    return int(model.model.model_sampling.sigmas.shape[0])


def sigma_at(model, timesteps: torch.Tensor) -> torch.Tensor:
    """Noise level of integer training timesteps (0 .. num_timesteps-1) in ComfyUI's sigma space."""
    sigmas = model.model.model_sampling.sigmas
    return sigmas[timesteps.to(sigmas.device).long()]


def noised(model, latent: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return model.model.model_sampling.noise_scaling(sigma, noise, latent)


def _size_kwargs(size: SampleSize) -> dict:
    """SDXL's size conditioning under the names ComfyUI's SDXL.encode_adm reads (width/height: the original)."""
    (height, width), (crop_h, crop_w), (target_height, target_width) = size.original, size.crop_top_left, size.target
    return {"height": height, "width": width, "crop_h": crop_h, "crop_w": crop_w, "target_height": target_height,
            "target_width": target_width}


def model_inputs(model, cond: torch.Tensor, pooled: torch.Tensor | None, latent: torch.Tensor,
                 sizes: list[SampleSize] | None = None) -> dict:
    """Keyword inputs of `apply_model` for this family: cross-attention, and SDXL's pooled output with
    each sample's size conditioning (`sizes`; without them, the latent's own size and no crop, which
    is what stock sampling passes). Families without size conditioning ignore `sizes`."""
    if sizes is None:
        side = (latent.shape[-2] * 8, latent.shape[-1] * 8)
        sizes = [SampleSize(side, side, (0, 0), side)] * latent.shape[0]
    groups = [slice(None)] if len(set(sizes)) == 1 else [slice(i, i + 1) for i in range(latent.shape[0])]
    inputs = []
    for rows in groups:
        conds = model.model.extra_conds(cross_attn=cond[rows], pooled_output=None if pooled is None else pooled[rows],
                                        noise=latent[rows], device=latent.device, **_size_kwargs(sizes[rows][0]))
        inputs.append({name: c.cond for name, c in conds.items()})
    return {name: torch.cat([i[name] for i in inputs]) for name in inputs[0]}


def predict_denoised(model, x: torch.Tensor, sigma: torch.Tensor, inputs: dict) -> torch.Tensor:
    options = model.model_options.get("transformer_options", {})
    return model.model.apply_model(x, sigma, transformer_options=dict(options), **inputs)


def denoised_from_output(model, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The denoised estimate ComfyUI derives from a raw model output (epsilon, v, ...) at `x`."""
    return model.model.model_sampling.calculate_denoised(sigma, output, x)


def is_v_prediction(model) -> bool:
    return isinstance(model.model.model_sampling, comfy.model_sampling.V_PREDICTION)


def txt2img(model, clip, vae, positive: list, latent_shape: tuple[int, ...], seed: int, steps: int, cfg: float,
            sampler: str) -> Image.Image:
    """A txt2img image (against the empty prompt, normal schedule) of the model as it is now, for a
    trainer's validation."""
    with torch.no_grad():
        negative = encode_tokens(clip, tokenize(clip, ""))
        latent = torch.zeros(1, *latent_shape)
        noise = comfy.sample.prepare_noise(latent, seed)
        samples = comfy.sample.sample(model, noise, steps, cfg, sampler, "normal", positive, negative, latent,
                                      disable_pbar=True, seed=seed)
        return to_pil(vae_decode(vae, samples))


# ---- sampling from a given start (stochastic inversion) ------------------------------------------

def sampler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SCHEDULERS)


def sigma_schedule(model, scheduler: str, steps: int) -> torch.Tensor:
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def timestep_sigmas(model) -> torch.Tensor:
    """Sigma of every discrete training timestep (index t), as a CPU tensor."""
    return model.get_model_object("model_sampling").sigmas.float().cpu()


def starts_at_max_sigma(model, sigma: float) -> bool:
    """Whether ComfyUI's samplers treat this first sigma as full noise (they then scale the noise by
    sqrt(1 + sigma^2) instead of sigma)."""
    max_sigma = float(model.get_model_object("model_sampling").sigma_max)
    return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


def latent_samples(latent: dict) -> torch.Tensor:
    """The tensor of a LATENT."""
    return latent["samples"]


def latent_batch_index(latent: dict) -> list[int] | None:
    """Which images of a larger batch a LATENT holds (set by e.g. Latent From Batch), for seeding noise."""
    return latent.get("batch_index")


def latent_with_samples(latent: dict, samples: torch.Tensor) -> dict:
    """A LATENT like `latent` (masks, batch index) holding `samples`."""
    return dict(latent, samples=samples)


class NoiseSource:
    """A ComfyUI NOISE (what SamplerCustomAdvanced's noise input takes) whose noise for a LATENT is
    `generate(samples, batch_index)`."""

    def __init__(self, seed: int, generate):
        self.seed, self.generate = seed, generate

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return self.generate(latent_samples(input_latent), latent_batch_index(input_latent))


def random_noise(latent: torch.Tensor, seed: int, batch_index=None) -> torch.Tensor:
    return comfy.sample.prepare_noise(latent, seed, batch_index)


def predicted_noise(model, positive: list, latent: torch.Tensor, noise: torch.Tensor, sigma: float,
                    seed: int) -> torch.Tensor:
    """The noise the model predicts, conditioned on `positive` alone (no guidance), for the latent
    noised to `sigma` with `noise`: (x - denoised) / sigma in ComfyUI's VE convention.

    It runs as a one-step "sampler" inside ComfyUI's own sampling, so everything that shapes a real
    sampling step (LoRA and other model patches, ControlNets, conditioning areas) shapes it too."""
    captured = {}

    def predict_once(model_wrap, x, sigmas, extra_args=None, callback=None, disable=None):
        denoised = model_wrap(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
        captured["noise"] = (x - denoised) / sigmas[0]
        return denoised

    sigmas = torch.tensor([sigma, 0.0])
    comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.KSAMPLER(predict_once), sigmas, positive, positive,
                               latent, disable_pbar=True, seed=seed)
    return captured["noise"].cpu()


def sample_from(model, positive: list, negative: list, latent: torch.Tensor, noise: torch.Tensor,
                sigmas: torch.Tensor, cfg: float, sampler_name: str, seed: int) -> torch.Tensor:
    """Sample along `sigmas` starting at noise_scaling(sigmas[0], noise, latent) (what every ComfyUI
    sampler does with its NOISE input); returns a VAE-space latent."""
    sampler = comfy.samplers.sampler_object(sampler_name)
    return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent,
                                      disable_pbar=True, seed=seed)


# ---- images --------------------------------------------------------------------------------------

def vae_encode(vae, image: torch.Tensor) -> torch.Tensor:
    """IMAGE (B,H,W,C in [0,1]) -> VAE latent, at most `VAE_ENCODE_PIXELS` per call."""
    per_call = max(1, VAE_ENCODE_PIXELS // (image.shape[1] * image.shape[2]))
    return torch.cat([vae.encode(image[i:i + per_call, ..., :3]) for i in range(0, len(image), per_call)])


def vae_decode(vae, latent: torch.Tensor) -> torch.Tensor:
    return vae.decode(latent)


def clip_vision_encode(clip_vision, image: torch.Tensor):
    """CLIP_VISION_OUTPUT for IMAGE, centre-cropped as stock CLIPVisionEncode does by default."""
    return clip_vision.encode_image(image[..., :3], crop=True)


def clip_vision_embeddings(output) -> tuple[torch.Tensor, torch.Tensor]:
    """(projected image embedding (B, D), penultimate hidden states (B, N, W)) of a CLIP_VISION_OUTPUT."""
    return output["image_embeds"], output["penultimate_hidden_states"]


def from_pil(image: Image.Image) -> torch.Tensor:
    """IMAGE (1, H, W, 3) in [0, 1] of an RGB picture."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def to_pil(image: torch.Tensor) -> Image.Image:
    array = (image[0, ..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    return Image.fromarray(array)


# ---- progress, cancel ----------------------------------------------------------------------------

class StepProgress:
    """ComfyUI's progress bar for one node, with the live loss as text and optional preview images.
    Every update also checks Cancel: the progress hook raises ComfyUI's interrupt exception."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)
        self.total = total

    def update(self, step: int, text: str | None = None, preview: Image.Image | None = None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(step, self.total, ("JPEG", preview, PREVIEW_MAX_SIDE) if preview else None)
        if text:
            _send_progress_text(text)


def _send_progress_text(text: str) -> None:
    from comfy_execution.utils import get_executing_context

    context = get_executing_context()
    if context is None:  # not inside the server's executor (tests, benchmarks)
        return
    from server import PromptServer

    PromptServer.instance.send_progress_text(text, context.node_id)


# ---- files ---------------------------------------------------------------------------------------

def register_model_folder(name: str, extensions: set[str]) -> None:
    """A model folder of this package under ComfyUI's models directory (e.g. models/inst_styles)."""
    path = os.path.join(folder_paths.models_dir, name)
    if name not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[name] = ([path], set(extensions))


def model_folder(name: str) -> Path:
    return Path(folder_paths.get_folder_paths(name)[0])


def model_files(name: str) -> list[str]:
    return folder_paths.get_filename_list(name)


def model_file_path(folder: str, filename: str, input_name: str,
                    fix: str = "Pick a file from the list, or refresh the page after adding one.") -> Path:
    path = folder_paths.get_full_path(folder, filename)
    if path is None:
        raise InputError(input_name, f"'{filename}' is not in models/{folder}.", fix)
    return Path(path)


def load_checkpoint(path: Path) -> tuple:
    """(MODEL, CLIP, VAE) by ComfyUI's own checkpoint loader, as CheckpointLoaderSimple loads them."""
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return model, clip, vae


def load_clip_vision(path: Path):
    """CLIP_VISION by ComfyUI's own loader, as CLIPVisionLoader loads it."""
    return comfy.clip_vision.load(str(path))


def input_directory() -> Path:
    return Path(folder_paths.get_input_directory())


def output_directory() -> Path:
    return Path(folder_paths.get_output_directory())


# ---- LoRA (StyleForge) ---------------------------------------------------------------------------

def unet_lora_key_map(model) -> dict[str, str]:
    """ComfyUI's map of every LoRA name it accepts for the UNet -> the weight key it patches."""
    return comfy.lora.model_lora_keys_unet(model.model, {})


def text_encoder_lora_key_map(clip) -> dict[str, str]:
    """ComfyUI's map of every LoRA name it accepts for the text encoder(s) -> the weight key it patches."""
    return comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})


def unet_layers(model) -> Iterator[tuple[str, torch.nn.Module]]:
    """(weight-key path, layer) of every module of the UNet, paths as in the LoRA key maps."""
    return model.model.named_modules()


def text_encoder_layer(clip, path: str) -> torch.nn.Module:
    return clip.cond_stage_model.get_submodule(path)


def apply_lora(model, clip, lora_tensors: dict[str, torch.Tensor], strength: float = 1.0) -> tuple:
    """(MODEL, CLIP) with a kohya LoRA applied exactly as stock LoraLoader applies it."""
    return comfy.sd.load_lora_for_models(model, clip, lora_tensors, strength, strength)
