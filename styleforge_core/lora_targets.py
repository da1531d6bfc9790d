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
# A DiT block's attention and MLP linears, in its image and text streams; not its adaLN modulation.
# SD3's MMDiT: fused qkv and output projection (attn2: SD3.5 Medium's extra self-attention). FLUX.1:
# its double-stream blocks' (the same per stream; mlp.0/mlp.2 are the MLP's linears) and its
# single-stream blocks' two linears (linear1: qkv and the MLP's input together; linear2: the
# attention's output and the MLP's output together).
DIT_BLOCK_LAYERS = {
    "diffusion_model.joint_blocks.": (".attn.qkv", ".attn.proj", ".attn2.qkv", ".attn2.proj", ".mlp.fc1", ".mlp.fc2"),
    "diffusion_model.double_blocks.": tuple(f".{stream}_{layer}" for stream in ("img", "txt")
                                            for layer in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")),
    "diffusion_model.single_blocks.": (".linear1", ".linear2"),
}
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
    """Attention and feed-forward linears of the transformer blocks (and SDXL's linear proj_in/out; a
    DiT's blocks' attention and MLP); with `include_conv`, also the convolutions of the UNet blocks
    except the first input conv."""
    dit_blocks = next((blocks for blocks in DIT_BLOCK_LAYERS if path.startswith(blocks)), None)
    if isinstance(layer, torch.nn.Linear) and dit_blocks is not None:
        return path.endswith(DIT_BLOCK_LAYERS[dit_blocks])
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
