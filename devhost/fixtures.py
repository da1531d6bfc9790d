"""Tiny real-architecture models built with ComfyUI's own classes, cached by content hash.

No weights can be downloaded, so tests and examples run on random-weight models whose architecture
ComfyUI detects exactly as it detects the real ones:

- `tiny_sd15_taesd`: SD1.5 UNet (model_channels 320, context 768) one level deep, the real SD1 CLIP
  text tower, TAESD as VAE. The fast one.
- `tiny_clip_vision_vitl`: the full 24-layer CLIP ViT-L/14 vision tower (ComfyUI only picks the
  ViT-L config when layer 22 exists), giving the 768-d `image_embeds` InST uses.
- `tiny_sd2_768v`: an SD2.x 768-v checkpoint (v-prediction, the real OpenCLIP-H text tower, 1024-d
  tokens) with a shallow one-width UNet.
- `tiny_sdxl_vega`: an SDXL-family checkpoint that ComfyUI detects as Segmind Vega: the real CLIP-L
  and CLIP-G text towers (pooled output, size conditioning) and a shallow one-width UNet.
- `tiny_sd35_medium`: an SD3.5 Medium checkpoint: a two-block MMDiT-X (hidden width 128, RMS-normed
  q/k, the extra self-attention of SD3.5 Medium in block 0), the real CLIP-L and CLIP-G text towers
  (no T5, as SD3.5 runs without it) and TAESD3 (16 latent channels) as VAE. ComfyUI detects it as its
  SD3 family with flow-matching sampling (shift 3).
- `tiny_flux_dev`: a FLUX.1 [dev] checkpoint without text encoders: one double-stream and one
  single-stream block at FLUX.1's own width (3072: 24 heads of the 128 channels its rotary position
  embedding takes), its guidance and pooled-vector inputs, and a 16-channel TAESD (TAEF1's layout)
  as VAE. ComfyUI detects it as Flux with flow-matching sampling (shift 1.15). Its text encoder
  pair (CLIP-L and the 4.7B-parameter T5-XXL) is not built: see tests/test_flux.py.
- `tiny_sd15_pix2pix_unet`: an InstructPix2Pix UNet (SD1.5's, eight input channels; diffusion model
  only), a real family these nodes do not take, for checking that they refuse it by name.

ComfyUI's layers skip weight initialisation, so every layer is initialised explicitly here.
Run `python -m devhost.fixtures` to build them all into the dev host's model folders.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from .inprocess import import_comfy
from .paths import BASE_DIR, FIXTURE_CACHE


@dataclass(frozen=True)
class Fixture:
    name: str
    folder: str  # ComfyUI model folder under base/models
    kind: str  # "checkpoint", "clip_vision" or "unet" (a diffusion model alone, for UNETLoader)
    family: str = "SD15"  # checkpoints: ComfyUI's supported-model class the file is built for
    unet: str = "sd15_one_level"  # checkpoints: a key of UNET_LAYOUTS (MMDIT_LAYOUTS for SD3, FLUX_LAYOUTS for Flux)
    vae: str = "taesd"
    seed: int = 0

    @property
    def filename(self) -> str:
        return f"{self.name}.safetensors"


# UNet layouts, as ComfyUI's UNetModel arguments. ComfyUI tells the families apart by model_channels,
# context width, linear projections and ADM input (and, for SDXL variants, the input transformer depths),
# so a shallow UNet with those values is detected as the real family. UNetModel takes output depths
# from the end of the list (the last entry is output block 0, the deepest). The "full" layouts are the
# published ones (SD1.5: 860M parameters; SDXL: 2.6B), built only for benchmarks.
_SD1 = {"context_dim": 768, "num_heads": 8, "num_head_channels": -1, "use_linear_in_transformer": False,
        "adm_in_channels": None, "num_classes": None}
_SD2 = {"context_dim": 1024, "num_heads": -1, "num_head_channels": 64, "use_linear_in_transformer": True,
        "adm_in_channels": None, "num_classes": None}
_SDXL = {"context_dim": 2048, "num_heads": -1, "num_head_channels": 64, "use_linear_in_transformer": True,
         "adm_in_channels": 2816, "num_classes": "sequential"}
UNET_LAYOUTS = {
    "sd15_one_level": {**_SD1, "channel_mult": [1], "num_res_blocks": [1], "transformer_depth": [1],
                       "transformer_depth_output": [1, 1], "transformer_depth_middle": 1},
    # InstructPix2Pix: SD1.5's UNet taking the image's latent beside the noisy one (8 input channels).
    "sd15_pix2pix_one_level": {**_SD1, "in_channels": 8, "channel_mult": [1], "num_res_blocks": [1],
                               "transformer_depth": [1], "transformer_depth_output": [1, 1],
                               "transformer_depth_middle": 1},
    "sd15_full": {**_SD1, "channel_mult": [1, 2, 4, 4], "num_res_blocks": [2] * 4,
                  "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0] * 3,
                  "transformer_depth_middle": 1},
    # SD2 768-v: ComfyUI reads v-prediction off output block 11 (see _mark_v_prediction), so the
    # shallow one keeps 4 levels x 2 res blocks at one width, with attention on the outer level only.
    "sd2_shallow": {**_SD2, "channel_mult": [1, 1, 1, 1], "num_res_blocks": [2] * 4,
                    "transformer_depth": [1, 1, 0, 0, 0, 0, 0, 0], "transformer_depth_output": [1] * 3 + [0] * 9,
                    "transformer_depth_middle": 1},
    # Segmind Vega's input transformer depths [0, 0, 1, 1, 2, 2] at one width: detected as Segmind_Vega.
    "sdxl_vega_shallow": {**_SDXL, "channel_mult": [1, 1, 1], "num_res_blocks": [2] * 3,
                          "transformer_depth": [0, 0, 1, 1, 2, 2],
                          "transformer_depth_output": [0] * 3 + [1] * 3 + [2] * 3,
                          "transformer_depth_middle": 1},
    "sdxl_full": {**_SDXL, "channel_mult": [1, 2, 4], "num_res_blocks": [2] * 3,
                  "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0] * 3 + [2] * 3 + [10] * 3,
                  "transformer_depth_middle": 10},
}

# MMDiT layouts, as ComfyUI's MMDiT arguments; ComfyUI reads them back off the weights
# (comfy/model_detection.py): the hidden width is 64 x depth, q/k RMS norms mark SD3.5, an `attn2` in a
# block marks SD3.5 Medium's MMDiT-X. The position embedding covers 512 x 512 px (32 x 32 patches).
MMDIT_LAYOUTS = {
    "sd35_medium_shallow": {"depth": 2, "patch_size": 2, "in_channels": 16, "out_channels": 16,
                            "adm_in_channels": 2048, "qk_norm": "rms", "x_block_self_attn_layers": [0],
                            "context_embedder_config": {"target": "torch.nn.Linear",
                                                        "params": {"in_features": 4096, "out_features": 128}},
                            "pos_embed_max_size": 32, "num_patches": 1024, "pos_embed_scaling_factor": None},
    # SD3.5 Medium as released (2.5B): 24 blocks of width 1536, MMDiT-X self-attention in blocks 0-12.
    "sd35_medium_full": {"depth": 24, "patch_size": 2, "in_channels": 16, "out_channels": 16,
                         "adm_in_channels": 2048, "qk_norm": "rms", "x_block_self_attn_layers": list(range(13)),
                         "context_embedder_config": {"target": "torch.nn.Linear",
                                                     "params": {"in_features": 4096, "out_features": 1536}},
                         "pos_embed_max_size": 384, "num_patches": 147456, "pos_embed_scaling_factor": None},
}

# FLUX.1 layouts, as ComfyUI's Flux arguments. ComfyUI reads the width, depths, text and pooled widths
# and the guidance input back off the weights; heads (24), MLP ratio and rotary axes are fixed.
_FLUX = {"in_channels": 16, "out_channels": 16, "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 3072,
         "mlp_ratio": 4.0, "num_heads": 24, "axes_dim": [16, 56, 56], "theta": 10000, "patch_size": 2,
         "qkv_bias": True, "guidance_embed": True}
FLUX_LAYOUTS = {"flux_dev_shallow": {**_FLUX, "depth": 1, "depth_single_blocks": 1}}

TINY_SD15 = Fixture("tiny_sd15_taesd", "checkpoints", "checkpoint")
TINY_SD2_V = Fixture("tiny_sd2_768v", "checkpoints", "checkpoint", family="SD20", unet="sd2_shallow")
TINY_SDXL = Fixture("tiny_sdxl_vega", "checkpoints", "checkpoint", family="SDXL", unet="sdxl_vega_shallow")
TINY_CLIP_VISION = Fixture("tiny_clip_vision_vitl", "clip_vision", "clip_vision")
TINY_SD35 = Fixture("tiny_sd35_medium", "checkpoints", "checkpoint", family="SD3", unet="sd35_medium_shallow",
                    vae="taesd3")
TINY_PIX2PIX = Fixture("tiny_sd15_pix2pix_unet", "diffusion_models", "unet", unet="sd15_pix2pix_one_level")
TINY_FLUX = Fixture("tiny_flux_dev", "checkpoints", "checkpoint", family="Flux", unet="flux_dev_shallow",
                    vae="taesd3")
ALL_FIXTURES = (TINY_SD15, TINY_SD2_V, TINY_SDXL, TINY_CLIP_VISION, TINY_SD35, TINY_PIX2PIX, TINY_FLUX)
# Real-size random-weight checkpoints for `bench --full` only: never built by the tests.
FULL_SD15 = Fixture("full_sd15", "checkpoints", "checkpoint", unet="sd15_full", vae="kl")
FULL_SDXL = Fixture("full_sdxl", "checkpoints", "checkpoint", family="SDXL", unet="sdxl_full", vae="kl")
FULL_SD35 = Fixture("full_sd35_medium", "checkpoints", "checkpoint", family="SD3", unet="sd35_medium_full",
                    vae="taesd3")


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


def _unet(layout: str):
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    arguments = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320, "legacy": False,
                 "use_spatial_transformer": True, "use_temporal_attention": False, "use_temporal_resblock": False,
                 "use_checkpoint": False, "dtype": torch.float32, "operations": comfy.ops.disable_weight_init}
    unet = UNetModel(**{**arguments, **UNET_LAYOUTS[layout]})
    _init_layers(unet)
    # SD zero-inits the output conv; a small non-zero one keeps predictions small while still letting
    # the conditioning reach the output (with zeros nothing upstream could be learned).
    with torch.no_grad():
        unet.out[2].weight.mul_(0.1)
        unet.out[2].bias.zero_()
    return unet


def _mmdit(layout: str):
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    model = MMDiT(input_size=None, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init,
                  **MMDIT_LAYOUTS[layout])
    _init_layers(model)
    torch.nn.init.normal_(model.pos_embed, std=0.02)  # a bare parameter: uninitialised memory otherwise
    return model


def _flux(layout: str):
    import comfy.ops
    import torch
    from comfy.ldm.flux.model import Flux

    model = Flux(dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init, **FLUX_LAYOUTS[layout])
    _init_layers(model)
    for name, p in model.named_parameters():
        if name.endswith(".scale"):  # the q/k RMS norms' gains: bare parameters
            torch.nn.init.ones_(p)
    return model


def _diffusion_model(fx: Fixture):
    builders = {"SD3": _mmdit, "Flux": _flux}
    return builders.get(fx.family, _unet)(fx.unet)


def _mark_v_prediction(unet) -> None:
    """ComfyUI calls an SD2 checkpoint v-prediction (768-v) when this LayerNorm's bias has a standard
    deviation above 0.09, as trained 768-v weights do (comfy/supported_models.py, SD20.model_type)."""
    import torch

    with torch.no_grad():
        torch.nn.init.normal_(unet.output_blocks[11][1].transformer_blocks[0].norm1.bias, std=0.3)


def _text_encoders(family: str):
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.sd2_clip
    import comfy.text_encoders.sd3_clip
    import torch

    classes = {"SD15": comfy.sd1_clip.SD1ClipModel, "SD20": comfy.text_encoders.sd2_clip.SD2ClipModel,
               "SDXL": comfy.sdxl_clip.SDXLClipModel,
               "SD3": lambda **kw: comfy.text_encoders.sd3_clip.SD3ClipModel(clip_l=True, clip_g=True, t5=False, **kw)}
    encoders = classes[family](device="cpu", dtype=torch.float32)
    _init_layers(encoders)
    return encoders


def _vae(kind: str):
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.taesd.taesd import TAESD

    if kind == "kl":
        vae = AutoencoderKL(embed_dim=4, ddconfig={
            "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0})
        _init_layers(vae)
    else:  # "taesd" (4 latent channels) or "taesd3" (16)
        vae = TAESD(latent_channels=16 if kind == "taesd3" else 4)
        _init_layers(vae)
        vae.vae_scale.data.fill_(1.0)  # 0 would give infinite latents
    return vae


def _checkpoint_state(fx: Fixture) -> dict:
    """A single-file checkpoint in the layout the family's real checkpoints use, written by the
    family's own ComfyUI config (the same conversion ComfyUI's checkpoint saver applies)."""
    import comfy.supported_models

    config = getattr(comfy.supported_models, fx.family)({})
    unet = _diffusion_model(fx)
    if fx.family == "SD20":
        _mark_v_prediction(unet)
    state = config.process_unet_state_dict_for_saving(unet.state_dict())
    if fx.family != "Flux":
        state.update(config.process_clip_state_dict_for_saving(_text_encoders(fx.family).state_dict()))
    state.update(config.process_vae_state_dict_for_saving(_vae(fx.vae).state_dict()))
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


STATE_BUILDERS = {"checkpoint": _checkpoint_state, "clip_vision": lambda fx: _clip_vision_state(),
                  "unet": lambda fx: _unet(fx.unet).state_dict()}
# The code each kind of fixture is built by: its cache key hashes this code, the fixture's fields and
# its UNet layout, so editing one builder rebuilds only the fixtures it makes.
BUILDER_CODE = {"checkpoint": (_init_layers, _unet, _mmdit, _flux, _diffusion_model, _mark_v_prediction, _text_encoders,
                               _vae, _checkpoint_state),
                "clip_vision": (_init_layers, _clip_vision_state),
                "unet": (_init_layers, _unet)}


def _stored(state: dict) -> dict:
    """The tensors as the file stores them: floating point as fp16 (as released checkpoints are), one
    tensor at a time, so the fp32 weights go as their fp16 copies come."""
    import torch

    for key in list(state):
        value = state.pop(key)
        state[key] = (value.to(torch.float16) if value.is_floating_point() else value).contiguous()
    return state


def _cache_key(fx: Fixture) -> str:
    code = [inspect.getsource(f) for f in (*BUILDER_CODE[fx.kind], _stored)]
    layout = {**UNET_LAYOUTS, **MMDIT_LAYOUTS, **FLUX_LAYOUTS}[fx.unet] if fx.kind in ("checkpoint", "unet") else None
    payload = json.dumps({"fixture": asdict(fx), "layout": layout, "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_file(fx: Fixture) -> Path:
    return FIXTURE_CACHE / f"{fx.name}-{_cache_key(fx)}.safetensors"


def build(fx: Fixture) -> Path:
    """The fixture's file in the cache, built on first use (atomically: temp file, then rename)."""
    cached = cached_file(fx)
    if cached.exists():
        return cached
    import_comfy()
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(fx.seed)
    state = _stored(STATE_BUILDERS[fx.kind](fx))
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


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def install_all(processes: int = 2) -> dict[str, Path]:
    """Every fixture, {name: its path in the model folders}. Those not cached yet are built side by side
    in `processes` fresh processes (one torch thread each), the slowest (those with CLIP-G, and FLUX.1's
    wide blocks) first."""
    missing = sorted((fx for fx in ALL_FIXTURES if not cached_file(fx).exists()),
                     key=lambda fx: fx.family not in ("SDXL", "SD3", "Flux"))
    if len(missing) > 1:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch
        with ProcessPoolExecutor(min(processes, len(missing)), mp_context=spawn, initializer=_one_thread) as pool:
            list(pool.map(build, missing))
    return {fx.name: install(fx) for fx in ALL_FIXTURES}


if __name__ == "__main__":
    for path in install_all().values():
        print(f"fixture: {path}")
