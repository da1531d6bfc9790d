"""Making ComfyUI's frozen models trainable: fully loaded with ordinary weights, autograd through the
text encoder, attention that does not keep its matrix, optional gradient checkpointing; every
patch undone on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import comfy.clip_model
import comfy.ldm.modules.attention
import comfy.model_management
import comfy.ops
import comfy.utils
import torch
import torch.utils.checkpoint

from . import memory
from .version import HostMismatch

# ComfyUI attention functions whose autograd graph keeps the full attention matrix.
MATRIX_ATTENTION = ("attention_sub_quad", "attention_split", "attention_basic")
ATTENTION_OVERRIDE = "optimized_attention_override"  # transformer_options key read by comfy's wrap_attn


class TrainingPatches:
    """Instance forwards set for training, and what each module had before (usually nothing: the
    class's forward; possibly another extension's instance forward), put back by `restore`. Each
    kind of patch notes when it runs, so a ComfyUI that no longer calls a layer's forward (a fused
    or compiled path) is caught before training rather than failing or wasting memory in it."""

    def __init__(self):
        self.previous: list[tuple[torch.nn.Module, object]] = []
        self.ran: dict[str, bool] = {}  # kind of patch -> whether one of its forwards has run

    def set(self, module: torch.nn.Module, forward, kind: str) -> None:
        self.previous.append((module, vars(module).get("forward")))
        self.ran.setdefault(kind, False)

        def noted(*args, **kwargs):
            self.ran[kind] = True
            return forward(*args, **kwargs)

        module.forward = noted

    def require_ran(self) -> None:
        """After the models have run once (the evaluation before training): every kind of patch ran."""
        skipped = [kind for kind, ran in self.ran.items() if not ran]
        if skipped:
            raise HostMismatch(f"the model ran without calling the forward these trainers set on its "
                               f"{' and '.join(skipped)}, so they cannot train through it.",
                               "Train on a ComfyUI in the tested range.")

    def restore(self) -> None:
        for module, previous in reversed(self.previous):
            if previous is None:
                vars(module).pop("forward", None)
            else:
                module.forward = previous
        self.previous.clear()


def _out_of_place_clip_layer(layer, patches: TrainingPatches) -> None:
    """ComfyUI's CLIPLayer adds its residuals in place, which autograd cannot differentiate through.
    Its attention is the fused one when the host picked one that keeps the attention matrix for
    backward (ComfyUI's CPU default for text encoders is basic attention): the same values."""
    def forward(x, mask=None, optimized_attention=None):
        if getattr(optimized_attention, "__name__", "") in MATRIX_ATTENTION:
            optimized_attention = comfy.ldm.modules.attention.get_attention_function("pytorch")
        x = x + layer.self_attn(layer.layer_norm1(x), mask, optimized_attention)
        return x + layer.mlp(layer.layer_norm2(x))

    patches.set(layer, forward, "text encoder layers (CLIPLayer)")


class _LinearCastInForward(torch.autograd.Function):
    """`linear(x, weight.to(x.dtype), bias)` for a frozen weight stored in another dtype, keeping the
    stored weight for backward instead of the cast copy. ComfyUI's cast layers (a text encoder kept
    in fp16 and run in fp32) make a new copy in every forward, and autograd would keep each copy
    until backward: with SDXL's two text encoders, several GB per prompt batch. Backward multiplies in
    the wider of the gradient's and the weight's dtypes, and on a CPU in fp32 (its fp16 matmul is
    many times slower; the product is rounded back to the gradient's dtype)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return torch.nn.functional.linear(rows, weight.to(rows.device, rows.dtype),
                                          None if bias is None else bias.to(rows.device, rows.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        wider = torch.float32 if grad.device.type == "cpu" else torch.promote_types(grad.dtype, weight.dtype)
        return (grad.to(wider) @ weight.to(grad.device, wider)).to(grad.dtype), None, None

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


def _cast_linears(module: torch.nn.Module, patches: TrainingPatches) -> None:
    """Give `module`'s plain cast Linear layers a forward that keeps only the stored weight for
    backward. A layer that gets patch functions later (ComfyUI's low-VRAM offload) uses its own."""
    for layer in module.modules():
        if _plain_cast_linear(layer):
            def forward(x, layer=layer, own=layer.forward):
                if layer.weight_function or layer.bias_function:
                    return own(x)
                return _LinearCastInForward.linear(layer, x)

            patches.set(layer, forward, "text encoder's cast Linear layers")


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


def _checkpoint_forward(module: torch.nn.Module, patches: TrainingPatches) -> None:
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

    patches.set(module, checkpointed, "diffusion model blocks (gradient checkpointing)")


FLUX_BLOCK_LISTS = ("double_blocks", "single_blocks")
DIT_BLOCK_LISTS = ("joint_blocks", *FLUX_BLOCK_LISTS)  # SD3's MMDiT; FLUX.1


class _OutOfPlaceAdds(torch.Tensor):
    """A tensor whose `+=` makes a new tensor instead of writing into itself."""

    def __iadd__(self, other):
        return self + other


def _plain(value):
    return value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value


def _out_of_place_residuals(block: torch.nn.Module, patches: TrainingPatches) -> None:
    """ComfyUI's Flux blocks add their residuals in place into the streams they are given (`img += ...`),
    which autograd cannot differentiate through once a stream has been saved for backward (by the
    norm that reads it), and which would change a checkpointed block's inputs before its recompute.
    The block gets its tensors as views whose `+=` adds out of place: the same values, nothing
    written into them. Without autograd (evaluation, validation sampling) it runs as ComfyUI wrote it."""
    forward = block.forward

    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)

        def wrapped(value):
            return value.as_subclass(_OutOfPlaceAdds) if isinstance(value, torch.Tensor) else value

        out = forward(*map(wrapped, args), **{name: wrapped(value) for name, value in kwargs.items()})
        return tuple(map(_plain, out)) if isinstance(out, tuple) else _plain(out)

    patches.set(block, run, "Flux blocks (residuals added in place)")


def _checkpoint_blocks(diffusion_model: torch.nn.Module, patches: TrainingPatches) -> None:
    """Checkpoint every layer of every UNet block, or every block of a DiT (an MMDiT's joint blocks,
    Flux's double- and single-stream blocks). A UNet's layers, not its blocks: ComfyUI's UNet runs a
    block by calling its layers one by one (`forward_timestep_embed`), never the block's forward. Some
    UNets (KOALA) have no middle block."""
    dit_blocks = [getattr(diffusion_model, name) for name in DIT_BLOCK_LISTS if hasattr(diffusion_model, name)]
    if dit_blocks:
        for block in (block for blocks in dit_blocks for block in blocks):
            _checkpoint_forward(block, patches)
        return
    unet = diffusion_model
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


def _require_static_loading(patcher) -> None:
    """ComfyUI 0.38's dynamic VRAM (comfy-aimdo, on by default on NVIDIA) keeps weights in host memory
    and streams each layer's into a reused GPU buffer per forward: a full load no longer makes them
    resident, and a weight saved for backward may be overwritten by the next layer's."""
    is_dynamic = getattr(patcher, "is_dynamic", None)
    if callable(is_dynamic) and is_dynamic():
        raise HostMismatch("it loads this model with dynamic VRAM, which streams the weights to the GPU layer by "
                           "layer; these trainers need them resident for backward.",
                           "Start ComfyUI with --disable-dynamic-vram to train (generation works either way).")


def _require_materialised(patcher) -> None:
    """Every weight holds its values as an ordinary tensor: not created empty or on the meta device to
    be loaded on demand, and not a quantized tensor type, whose layers these trainers cannot adapt."""
    for name, tensor in [*patcher.model.named_parameters(), *patcher.model.named_buffers()]:
        if tensor.is_meta or (tensor.numel() == 0 and tensor.dim() > 1):
            raise HostMismatch(f"weight {name} is not loaded ({'meta' if tensor.is_meta else 'empty'}); ComfyUI "
                               "loads it only when a layer runs.", "Start ComfyUI with --disable-dynamic-vram.")
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            raise HostMismatch(f"weight {name} is a {type(tensor).__name__}, not an ordinary tensor (a quantized "
                               "model?).", "Load the model unquantized (an fp16, bf16 or fp32 checkpoint).")


def _require_resident(patcher) -> None:
    """After the full load, every weight is on the device the model computes on."""
    device = torch.device(patcher.load_device)
    for name, param in patcher.model.named_parameters():
        if param.device.type != device.type or (device.index is not None and param.device.index != device.index):
            raise HostMismatch(f"after a full load, weight {name} is on {param.device}, not on {device} where the "
                               "model computes.", "Start ComfyUI with --disable-dynamic-vram, or --highvram.")


def load_for_training(model=None, clip=None) -> None:
    """The frozen models fully on the compute device with ordinary (non-inference) weights, every other
    model unloaded (`memory_required=1e20`: ComfyUI's model management does not know how much memory
    training's activations take). `training_context` does this on entry; a validation round calls it
    again, since its sampling, decoding and scoring may have offloaded part of the models to make room.
    A host that would not give that (weights streamed, lazily loaded, quantized or left elsewhere)
    raises HostMismatch before anything changes."""
    patchers = [p for p in (model, clip.patcher if clip is not None else None) if p is not None]
    for patcher in patchers:
        _require_static_loading(patcher)
        _require_materialised(patcher)
    with torch.inference_mode(False):
        comfy.model_management.load_models_gpu(patchers, memory_required=1e20, force_full_load=True)
        for patcher in patchers:
            _require_resident(patcher)
            _make_autograd_ready(patcher.model)
            patcher.model.requires_grad_(False)


@contextlib.contextmanager
def training_context(model=None, clip=None, gradient_checkpointing: bool = False) -> Iterator[TrainingPatches]:
    """Load the frozen models for autograd: full load on the compute device, ordinary (non-inference)
    weights, gradients enabled, out-of-place CLIP layers so gradients can cross the text encoder, and
    attention that does not store its matrix.

    Text encoders kept in another dtype than they compute in (fp16 weights, fp32 compute on the CPU)
    keep only their stored weights for backward, not a cast copy per forward.

    Restored on exit: every forward and option patched here, and the memory training freed is handed
    back. Kept: the autograd-ready weights (the same values as ordinary tensors; sampling uses them as
    it used the originals). On entry every other model is unloaded from the compute device
    (`load_for_training`): a trainer that runs out of memory mid-run loses the run, while an unloaded
    model is only reloaded by the next node that needs it.

    Yields the patches, whose `require_ran` a trainer calls once the models have run."""
    patches = TrainingPatches()
    with torch.inference_mode(False), torch.enable_grad(), contextlib.ExitStack() as restore:
        restore.callback(memory.hand_back_memory)  # last, after everything else is restored
        load_for_training(model, clip)
        restore.callback(patches.restore)
        if clip is not None:
            for layer in clip.cond_stage_model.modules():
                if isinstance(layer, comfy.clip_model.CLIPLayer):
                    _out_of_place_clip_layer(layer, patches)
            _cast_linears(clip.cond_stage_model, patches)
        if model is not None:
            restore.enter_context(memory_efficient_attention(model))
            diffusion_model = model.model.diffusion_model
            for name in FLUX_BLOCK_LISTS:
                for block in getattr(diffusion_model, name, ()):
                    _out_of_place_residuals(block, patches)
            if gradient_checkpointing:
                _checkpoint_blocks(diffusion_model, patches)
        yield patches
