"""Nodes of InST's inference side: stochastic noise inversion, the all-in-one transfer, latent AdaIN."""

from comfy_api.latest import io

from .. import host
from ..inst_core.adain import adain
from ..inst_core.inversion import MODES, SELF_CONSISTENT, predicted_noise_source, style_transfer
from .categories import INST


class InversionNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_InversionNoise",
            display_name="InST Inversion Noise",
            category=INST,
            description="NOISE for SamplerCustomAdvanced: the noise the model predicts for the content under "
                        "the style conditioning, so sampling keeps the content's layout.",
            inputs=[
                io.Model.Input("model", tooltip="The model that will sample (LoRA-patched models work too)."),
                io.Conditioning.Input("positive", tooltip="Style conditioning the noise is predicted under "
                                      "(InST Style Conditioning, or plain text)."),
                io.Sigmas.Input("sigmas", tooltip="The SIGMAS given to the sampler; the inversion happens at the "
                                "first one (BasicScheduler's denoise is the strength)."),
                io.Int.Input("noise_seed", default=0, min=0, max=2**64 - 1, control_after_generate=True,
                             tooltip="Seed of the random noise the content is noised with before prediction."),
            ],
            outputs=[io.Noise.Output()],
        )

    @classmethod
    def execute(cls, model, positive, sigmas, noise_seed) -> io.NodeOutput:
        return io.NodeOutput(predicted_noise_source(model, positive, sigmas, noise_seed))


class StyleTransfer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_StyleTransfer",
            display_name="InST Style Transfer (Stochastic Inversion)",
            category=INST,
            description="Stylises a content latent: optional AdaIN to the style latent, stochastic inversion "
                        "at the strength's noise level, then sampling with CFG.",
            inputs=[
                io.Model.Input("model", tooltip="The SD model (LoRA-patched models work too)."),
                io.Conditioning.Input("positive", tooltip="Style conditioning (InST Style Conditioning or text)."),
                io.Conditioning.Input("negative", tooltip="Unconditional conditioning (paper: empty prompt)."),
                io.Latent.Input("content", tooltip="VAE Encode of the content image."),
                io.Float.Input("strength", default=0.7, min=0.0, max=1.0, step=0.01,
                               tooltip="How far to noise the content: 0 returns it unchanged, 1 is full noise "
                                       "(paper example: 0.7)."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Sampling steps after the inversion (ignored in paper_parity: its grid)."),
                io.Float.Input("cfg", default=10.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Classifier-free guidance (paper: 10; fixed to 10 in paper_parity)."),
                io.Combo.Input("sampler_name", options=host.sampling.sampler_names(), default="euler",
                               tooltip="Sampler (euler = DDIM with eta 0)."),
                io.Combo.Input("scheduler", options=host.sampling.scheduler_names(), default="normal",
                               tooltip="Scheduler of the sampling sigmas."),
                io.Int.Input("seed", default=0, min=0, max=2**64 - 1, control_after_generate=True,
                             tooltip="Seed of the noise used for the inversion."),
                io.Combo.Input("mode", options=list(MODES), default=SELF_CONSISTENT,
                               tooltip="self_consistent: noise level = first sampling step. paper_parity: the "
                                       "official notebook (t=int(s*1000), 50-step DDIM grid, CFG 10; SD1.x's "
                                       "arithmetic, not for SD3.5 or FLUX.1)."),
                io.Latent.Input("style", optional=True,
                                tooltip="VAE Encode of the painting: AdaIN gives the content its statistics first."),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, content, strength, steps, cfg, sampler_name, scheduler, seed, mode,
                style=None) -> io.NodeOutput:
        return io.NodeOutput(style_transfer(model, positive, negative, content, strength, steps, cfg, sampler_name,
                                            scheduler, seed, mode, style))


class LatentAdaIN(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_LatentAdaIN",
            display_name="Latent AdaIN (InST)",
            category=INST,
            description="Gives the content latent the per-channel mean and std of the style latent, "
                        "as InST does before inverting the content.",
            inputs=[
                io.Latent.Input("content", tooltip="Latent of the content image (VAE Encode)."),
                io.Latent.Input("style", tooltip="Latent of the painting; its size may differ from the content."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, content, style) -> io.NodeOutput:
        samples = adain(host.sampling.latent_samples(content), host.sampling.latent_samples(style))
        return io.NodeOutput(host.sampling.latent_with_samples(content, samples))
