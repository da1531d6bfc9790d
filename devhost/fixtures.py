"""Tiny real-architecture models built with ComfyUI's own classes, cached by content hash.

No weights can be downloaded, so tests and examples run on random-weight models whose architecture
ComfyUI detects exactly as it detects the real ones:

- `tiny_sd15_taesd`: SD1.5 UNet (model_channels 320, context 768) one level deep, the real SD1 CLIP
  text tower, TAESD as VAE. The fast one.
- `tiny_sd15_kl`: two UNet levels and the real KL VAE. Closer to a real checkpoint.
- `tiny_clip_vision_vitl`: the full 24-layer CLIP ViT-L/14 vision tower (ComfyUI only picks the
  ViT-L config when layer 22 exists), giving the 768-d `image_embeds` InST uses.
- `tiny_sd3_unet`: a one-block SD3 MMDiT (diffusion model only), a real model of another family,
  for checking that the SD-only nodes refuse it.

ComfyUI's layers skip weight initialisation, so every layer is initialised explicitly here.
Run `python -m devhost.fixtures` to build them all into the dev host's model folders.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .inprocess import import_comfy
from .paths import BASE_DIR, FIXTURE_CACHE


@dataclass(frozen=True)
class Fixture:
    name: str
    folder: str  # ComfyUI model folder under base/models
    kind: str  # "sd15" or "clip_vision"
    vae: str = "taesd"
    channel_mult: tuple[int, ...] = (1,)
    seed: int = 0

    @property
    def filename(self) -> str:
        return f"{self.name}.safetensors"


TINY_SD15 = Fixture("tiny_sd15_taesd", "checkpoints", "sd15", vae="taesd", channel_mult=(1,))
TINY_SD15_KL = Fixture("tiny_sd15_kl", "checkpoints", "sd15", vae="kl", channel_mult=(1, 2))
TINY_CLIP_VISION = Fixture("tiny_clip_vision_vitl", "clip_vision", "clip_vision")
TINY_SD3 = Fixture("tiny_sd3_unet", "diffusion_models", "sd3_unet")
ALL_FIXTURES = (TINY_SD15, TINY_SD15_KL, TINY_CLIP_VISION, TINY_SD3)


def _init_layers(module) -> None:
    """Reset every standard layer with torch's own initialisers; other raw parameters start at 0."""
    import torch

    layer_types = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                   torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding)
    for p in module.parameters():
        p.data.zero_()
    for m in module.modules():
        torch_layer = next((cls for cls in layer_types if isinstance(m, cls)), None)
        if torch_layer is not None:
            torch_layer.reset_parameters(m)  # ComfyUI's subclasses override it with a no-op
        if isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight, std=0.02)


def _unet_state(channel_mult: tuple[int, ...]) -> dict:
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    n = len(channel_mult)
    unet = UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1] * n,
        channel_mult=list(channel_mult), transformer_depth=[1] * n, transformer_depth_output=[1] * (2 * n),
        transformer_depth_middle=1, context_dim=768, num_heads=8, num_head_channels=-1,
        use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
        use_temporal_attention=False, use_temporal_resblock=False, use_checkpoint=False,
        dtype=torch.float32, operations=comfy.ops.disable_weight_init)
    _init_layers(unet)
    # SD zero-inits the output conv; a small non-zero one keeps predictions small while still letting
    # the conditioning reach the output (with zeros nothing upstream could be learned).
    with torch.no_grad():
        unet.out[2].weight.mul_(0.1)
        unet.out[2].bias.zero_()
    return {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}


def _sd15_state(fx: Fixture) -> dict:
    import comfy.sd1_clip
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.taesd.taesd import TAESD

    state = _unet_state(fx.channel_mult)
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    _init_layers(clip.transformer)
    state.update({"cond_stage_model.transformer." + k: v for k, v in clip.transformer.state_dict().items()})
    if fx.vae == "kl":
        vae = AutoencoderKL(embed_dim=4, ddconfig={
            "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0})
        _init_layers(vae)
    else:
        vae = TAESD(latent_channels=4)
        _init_layers(vae)
        vae.vae_scale.data.fill_(1.0)  # 0 would give infinite latents
    state.update({"first_stage_model." + k: v for k, v in vae.state_dict().items()})
    return state


def _clip_vision_state() -> dict:
    import comfy.clip_model
    import comfy.ops
    import torch

    config_path = Path(comfy.clip_model.__file__).parent / "clip_vision_config_vitl.json"
    model = comfy.clip_model.CLIPVisionModelProjection(json.loads(config_path.read_text()), torch.float32,
                                                       "cpu", comfy.ops.manual_cast)
    _init_layers(model)
    for name, p in model.named_parameters():
        if "class_embedding" in name or "position_embedding" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model.state_dict()


def _sd3_unet_state() -> dict:
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    model = MMDiT(input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=1, adm_in_channels=2048,
                  context_embedder_config={"target": "torch.nn.Linear",
                                           "params": {"in_features": 4096, "out_features": 64}},
                  pos_embed_max_size=16, num_patches=256, pos_embed_scaling_factor=None, x_block_self_attn_layers=[],
                  dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    _init_layers(model)
    return model.state_dict()


STATE_BUILDERS = {"sd15": _sd15_state, "clip_vision": lambda fx: _clip_vision_state(),
                  "sd3_unet": lambda fx: _sd3_unet_state()}


def _cache_key(fx: Fixture) -> str:
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + json.dumps(asdict(fx), sort_keys=True).encode()).hexdigest()[:16]


def build(fx: Fixture) -> Path:
    """The fixture's file in the cache, built on first use (atomically: temp file, then rename)."""
    cached = FIXTURE_CACHE / f"{fx.name}-{_cache_key(fx)}.safetensors"
    if cached.exists():
        return cached
    import_comfy()
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(fx.seed)
    state = STATE_BUILDERS[fx.kind](fx)
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    FIXTURE_CACHE.mkdir(parents=True, exist_ok=True)
    for stale in FIXTURE_CACHE.glob(f"{fx.name}-*.safetensors"):
        stale.unlink()
    tmp = cached.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"note": "random-weight architecture fixture for tests"})
    os.replace(tmp, cached)
    return cached


def install(fx: Fixture) -> Path:
    """Build (or reuse) the fixture and link it into the dev host's model folder under its plain name."""
    target = build(fx)
    link = BASE_DIR / "models" / fx.folder / fx.filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return link
        link.unlink()
    link.symlink_to(target)
    return link


def install_all() -> list[Path]:
    return [install(fx) for fx in ALL_FIXTURES]


if __name__ == "__main__":
    for path in install_all():
        print(f"fixture: {path}")
