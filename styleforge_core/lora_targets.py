"""Which layers StyleForge adapts, and the kohya name each adapter is saved under.

The names come from ComfyUI's own LoRA key maps, so stock LoraLoader maps every saved key back onto
the layer that was trained.
"""

from __future__ import annotations

import torch

from .. import host
from ..training_kit.model_checks import text_encoder_widths

UNET_ROOT = "diffusion_model."
UNET_BLOCKS = ("diffusion_model.input_blocks.", "diffusion_model.middle_block.", "diffusion_model.output_blocks.")
FIRST_INPUT_CONV = "diffusion_model.input_blocks.0."
MMDIT_BLOCKS = "diffusion_model.joint_blocks."
# An MMDiT block's attention (fused qkv and output projection; attn2: SD3.5 Medium's extra
# self-attention) and MLP linears, in its image and text streams; not its adaLN modulation.
MMDIT_LAYERS = (".attn.qkv", ".attn.proj", ".attn2.qkv", ".attn2.proj", ".mlp.fc1", ".mlp.fc2")
WEIGHT = ".weight"


def _preferred_name(names: list[str], prefixes: tuple[str, ...]) -> str | None:
    return next((n for p in prefixes for n in names if n.startswith(p)), None)


def _kohya_names(key_map: dict[str, str], prefixes: tuple[str, ...]) -> dict[str, str]:
    """Weight key -> the first of ComfyUI's accepted LoRA names for it with a preferred prefix."""
    names: dict[str, list[str]] = {}
    for lora_name, weight_key in key_map.items():
        names.setdefault(weight_key, []).append(lora_name)
    chosen = {key: _preferred_name(found, prefixes) for key, found in names.items()}
    return {key: name for key, name in chosen.items() if name is not None}


def _unet_lora_names(model) -> dict[str, str]:
    """Module path inside the model -> kohya name. Kohya writes the diffusers-style block names
    (`lora_unet_down_blocks_0_...`); ComfyUI also accepts its own (`lora_unet_input_blocks_1_...`),
    which is the fallback for layers diffusers has no name for."""
    key_map = host.lora.unet_lora_key_map(model)
    native = {f"lora_unet_{k[len(UNET_ROOT):-len(WEIGHT)].replace('.', '_')}"
              for k in key_map.values() if k.startswith(UNET_ROOT)}
    diffusers_style = {n: k for n, k in key_map.items() if n.startswith("lora_unet_") and n not in native}
    names = _kohya_names(key_map, ("lora_unet_",))
    names.update(_kohya_names(diffusers_style, ("lora_unet_",)))
    return {key[:-len(WEIGHT)]: name for key, name in names.items()}


def _text_encoder_lora_names(clip) -> dict[str, str]:
    """Module path inside the text encoder -> kohya name (`lora_te_` for one text encoder,
    `lora_te1_`/`lora_te2_` for SDXL's two), for the encoder layers' attention and MLP linears."""
    layers = {n: k for n, k in host.lora.text_encoder_lora_key_map(clip).items() if "_text_model_encoder_layers_" in n}
    prefixes = ("lora_te1_", "lora_te2_") if len(text_encoder_widths(clip)) > 1 else ("lora_te_",)
    return {key[:-len(WEIGHT)]: name for key, name in _kohya_names(layers, prefixes).items()}


def _is_unet_lora_layer(path: str, layer: torch.nn.Module, include_conv: bool) -> bool:
    """Attention and feed-forward linears of the transformer blocks (and SDXL's linear proj_in/out; an
    MMDiT's joint blocks' attention and MLP); with `include_conv`, also the convolutions of the UNet
    blocks except the first input conv."""
    if isinstance(layer, torch.nn.Linear) and path.startswith(MMDIT_BLOCKS):
        return path.endswith(MMDIT_LAYERS)
    if isinstance(layer, torch.nn.Linear):
        return ".transformer_blocks." in path or path.endswith((".proj_in", ".proj_out"))
    return (include_conv and isinstance(layer, torch.nn.Conv2d) and path.startswith(UNET_BLOCKS)
            and not path.startswith(FIRST_INPUT_CONV))


def lora_targets(model, clip, include_conv: bool, include_text_encoder: bool) -> dict[str, torch.nn.Module]:
    """kohya name -> the ComfyUI layer a LoRA adapter wraps."""
    unet_names = _unet_lora_names(model)
    targets = {unet_names[path]: layer for path, layer in host.lora.unet_layers(model)
               if path in unet_names and _is_unet_lora_layer(path, layer, include_conv)}
    if include_text_encoder:
        for path, name in _text_encoder_lora_names(clip).items():
            targets[name] = host.lora.text_encoder_layer(clip, path)
    return targets
