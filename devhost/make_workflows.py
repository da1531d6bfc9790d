"""Author the bundled workflows as lessons: each is written here as an API prompt plus a layout (a
Note on top, a group per stage, columns of nodes), loaded into the real ComfyUI frontend
(`app.loadApiJson`, headless Chromium), laid out there with the sizes the frontend gives each node,
and saved as the UI-format file users open and share (`app.graph.serialize()`), so
`example_workflows/*.json` is exactly what ComfyUI itself writes. The file names are what ComfyUI's
template browser shows as each template's title and description.

    .devhost/venv/bin/python -m devhost.make_workflows

Model names are the files users download (links in each workflow's metadata, which the frontend
offers when one is missing); the example runner substitutes the tiny models and shrinks sizes and
steps (devhost/run_examples.py). Inputs are the example images the package ships and copies into the
input folder (shipped_inputs.py: the pictures as input/inst_styleforge_*.jpg, the image sets under
input/inst_styleforge/).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from bench.figures import template_cost

from .browser import HeadlessChromium, frontend_page
from .comfy_server import ComfyServer
from .paths import DEVHOST, TEMPLATES
from .ui_workflow import ui_to_api

CHECKPOINT = {"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
              "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                     "v1-5-pruned-emaonly-fp16.safetensors"}
CLIP_VISION = {"name": "clip-vit-large-patch14.safetensors", "directory": "clip_vision",
               "url": "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors"}
EXAMPLES = "inst_styleforge"  # the shipped example image sets, under ComfyUI's input folder (shipped_inputs.py)
INTRO_TITLE = "Read me first"
# The view a template opens with: 100%, shifted right past the frontend's side bar (about 50 px wide)
# so the Read me first note is the first thing seen, whole.
OPENING_VIEW = {"scale": 1.0, "offset": [90.0, 10.0]}
LOAD, TRAIN, GENERATE, STOCK = "#3f789e", "#b06634", "#8A8", "#88A"  # group colours: ComfyUI's palette


def node(class_type: str, title: str | None = None, **inputs) -> dict:
    entry = {"class_type": class_type, "inputs": inputs}
    if title:
        entry["_meta"] = {"title": title}
    return entry


@dataclass
class Note:
    title: str
    text: str  # markdown
    width: int = 340
    height: int = 160


@dataclass
class Stage:
    title: str
    color: str
    columns: list[list[str | Note]]  # node ids (of the prompt) or notes, top to bottom
    new_row: bool = False  # start a new row of groups below the previous ones (fits a screen at 100%)


@dataclass
class Lesson:
    prompt: dict
    intro: Note
    stages: list[Stage]
    models: dict[str, list[dict]] = field(default_factory=dict)  # loader node id -> its model files


CHECKPOINT_TEXT = (f"**Checkpoint**: `{CHECKPOINT['name']}` in `models/checkpoints` ([download]({CHECKPOINT['url']})); "
                   "any SD1.5 model works, and SD2.x and SDXL ones too.")
# ComfyUI Desktop saves a template's model download into its folder under the template's name. A browser
# saves it into its Downloads folder under the name the server sends (it ignores a cross-site link's
# `download` name), and the one source of this CLIP vision model, OpenAI's repository, sends
# model.safetensors: the note says where the file goes and under which name.
INST_MODELS_NOTE = Note("Models", "**Models**\n\n" + CHECKPOINT_TEXT + "\n\n**CLIP vision ViT-L/14**: "
                        f"`{CLIP_VISION['name']}` in `models/clip_vision`: [download]({CLIP_VISION['url']}). "
                        "ComfyUI Desktop saves it there under that name; a browser saves it to your Downloads "
                        "folder as `model.safetensors`: move it to `models/clip_vision` and rename it "
                        f"`{CLIP_VISION['name']}`.\n\nPress R after adding a model.", width=340, height=300)
STYLEFORGE_MODELS_NOTE = Note("Models", "**Models**\n\n" + CHECKPOINT_TEXT + "\n\nPress R after adding a model.",
                              width=340, height=170)


def inst_loaders() -> dict:
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT["name"]),
        "2": node("CLIPVisionLoader", "CLIP vision (ViT-L/14)", clip_name=CLIP_VISION["name"]),
        "3": node("LoadImage", "The painting", image=f"{EXAMPLES}_painting.jpg"),
    }


def inst_trainer(style_filename: str, validation_prompts: str) -> dict:
    return {
        "4": node("InST_TrainStyle", model=["1", 0], clip=["1", 1], vae=["1", 2], clip_vision=["2", 0],
                  painting=["3", 0], steps=1000, learning_rate=1e-4, seed=23, resolution=512,
                  filename=style_filename, validation=["30", 0]),
        "30": node("StylePersonalization_Validation", prompts=validation_prompts, every=100, seed=0, steps=20,
                   cfg=7.0, filename_prefix="validation/inst"),
        "5": node("SaveImage", "Loss curve", images=["4", 1], filename_prefix="inst/loss_curve"),
        "6": node("CLIPVisionEncode", clip_vision=["2", 0], image=["3", 0], crop="center"),
        "7": node("CLIPTextEncode", "Negative (empty, as the paper)", text="", clip=["1", 1]),
    }


def time_note(method: str) -> str:
    """The intro notes' time-and-memory sentence, from the recorded benchmark runs (bench/results/)."""
    return "**Time and memory**: 1000 steps at 512 px. " + template_cost(method)


INST_VALIDATION_NOTE = Note("Validation", "**Validation** every 100 steps: images from the prompts in Training "
                            "Validation go to output/validation/ with the step in the name, scored against the "
                            "painting (CLIP-I, with the trainer's CLIP vision); the trainer names the best step. "
                            "Seeds are fixed: queueing again after changing only a generation prompt reuses the "
                            "trained style from the cache.", height=160)
STYLEFORGE_VALIDATION_NOTE = Note("Validation", "**Validation** every 100 steps: images from the prompts in "
                                  "Training Validation go to output/validation/ with the step in the name. To "
                                  "score them against the StyleRef images (CLIP-I) and have the trainer name the "
                                  "best step, connect a Load CLIP Vision to its clip_vision input. Seeds are "
                                  "fixed: queueing again after changing only a generation prompt reuses the "
                                  "trained LoRA from the cache.", height=180)


def inst_train_and_generate() -> Lesson:
    prompt = {**inst_loaders(), **inst_trainer("inst/example_style", "a house by the sea in the style of *\n"
                                                                      "a portrait of a woman in the style of *")}
    prompt.update({
        "8": node("InST_ExportEmbedding", style=["4", 0], name="inst_example_style", clip_vision_output=["6", 0]),
        "9": node("InST_StyleConditioning", clip=["1", 1], style=["4", 0],
                  text="a portrait of a woman in the style of *", placeholder="*", clip_vision_output=["6", 0]),
        "10": node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "11": node("KSampler", model=["1", 0], positive=["9", 0], negative=["7", 0], latent_image=["10", 0],
                   seed=7, steps=30, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "12": node("VAEDecode", samples=["11", 0], vae=["1", 2]),
        "13": node("SaveImage", images=["12", 0], filename_prefix="inst/generated"),
        # the stock encoder's text is made from the export node's output, so it runs after the export
        # and again whenever the style is retrained
        "18": node("StringReplace", "Prompt with the exported embedding",
                   string="a portrait of a woman in the style of *", find="*", replace=["8", 0]),
        "14": node("CLIPTextEncode", "Stock encoder with the exported embedding", text=["18", 0], clip=["1", 1]),
        "15": node("KSampler", model=["1", 0], positive=["14", 0], negative=["7", 0], latent_image=["10", 0],
                   seed=7, steps=30, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "16": node("VAEDecode", samples=["15", 0], vae=["1", 2]),
        "17": node("SaveImage", images=["16", 0], filename_prefix="inst/generated_with_embedding"),
    })
    intro = Note(INTRO_TITLE, "# Learn a painting's style, then generate with it (InST)\n"
                 "Train InST Style learns the style of **one painting** as a text token, written `*` in prompts "
                 "(Zhang et al., *Inversion-based style transfer*, CVPR 2023). Generate with it through InST Style "
                 "Conditioning, or anywhere as a stock `embedding:inst_example_style` after the export.\n\n"
                 "**Your own painting**: replace the image in *The painting* (the example is a picture drawn by "
                 "this package, to show the graph runs). " + time_note("inst"), width=900, height=190)
    stages = [
        Stage("1. Load", LOAD, [["1", "2", "3", INST_MODELS_NOTE]]),
        Stage("2. Learn the style", TRAIN, [["4", "30"], ["6", "5", INST_VALIDATION_NOTE]]),
        Stage("3. Generate with the style token (InST Style Conditioning)", GENERATE,
              [["9", "7", "10"], ["11", "12"], ["13"]], new_row=True),
        Stage("4. Or with the stock embedding: embedding:NAME in any CLIP Text Encode", STOCK,
              [["8", "18"], ["14", "15"], ["16", "17"]]),
    ]
    return Lesson(prompt, intro, stages, {"1": [CHECKPOINT], "2": [CLIP_VISION]})


def inst_style_transfer() -> Lesson:
    prompt = {**inst_loaders(), **inst_trainer("inst/example_transfer_style", "*\na house in the style of *")}
    prompt.update({
        "8": node("LoadImage", "The content photo", image=f"{EXAMPLES}_content_photo.jpg"),
        "9": node("InST_StyleConditioning", clip=["1", 1], style=["4", 0], text="*", placeholder="*",
                  clip_vision_output=["6", 0]),
        "22": node("ImageScale", "Photo at the model's size", image=["8", 0], upscale_method="lanczos", width=512,
                   height=512, crop="center"),
        "10": node("VAEEncode", "Content latent", pixels=["22", 0], vae=["1", 2]),
        "11": node("VAEEncode", "Painting latent (for AdaIN)", pixels=["3", 0], vae=["1", 2]),
        "12": node("InST_StyleTransfer", model=["1", 0], positive=["9", 0], negative=["7", 0], content=["10", 0],
                   style=["11", 0], strength=0.7, steps=50, cfg=10.0, sampler_name="euler", scheduler="normal",
                   seed=42, mode="self_consistent"),
        "13": node("VAEDecode", samples=["12", 0], vae=["1", 2]),
        "14": node("SaveImage", images=["13", 0], filename_prefix="inst/transfer"),
        # the same transfer with stock SamplerCustomAdvanced: only the NOISE comes from this package
        "15": node("BasicScheduler", "Strength = denoise", model=["1", 0], scheduler="normal", steps=35,
                   denoise=0.7),
        "16": node("InST_InversionNoise", model=["1", 0], positive=["9", 0], sigmas=["15", 0], noise_seed=42),
        "17": node("CFGGuider", model=["1", 0], positive=["9", 0], negative=["7", 0], cfg=10.0),
        "18": node("KSamplerSelect", sampler_name="euler"),
        "19": node("SamplerCustomAdvanced", noise=["16", 0], guider=["17", 0], sampler=["18", 0], sigmas=["15", 0],
                   latent_image=["10", 0]),
        "20": node("VAEDecode", samples=["19", 0], vae=["1", 2]),
        "21": node("SaveImage", images=["20", 0], filename_prefix="inst/transfer_sampler_custom"),
    })
    intro = Note(INTRO_TITLE, "# Transfer a painting's style onto your photo (InST stochastic inversion)\n"
                 "The style is learned from the painting as in the first InST template; the transfer then starts "
                 "sampling from the noise the model itself predicts for the content photo under the style, so "
                 "the content survives the style. **strength** (or the scheduler's denoise) sets how much changes."
                 "\n\n**Your own pictures**: replace *The painting* and *The content photo*. Section 3 is the whole "
                 "transfer in one node; section 4 is the same transfer with stock SamplerCustomAdvanced, for "
                 "those who want to change the sampler. " + time_note("inst"), width=900, height=210)
    stages = [
        Stage("1. Load", LOAD, [["1", "2", "3"], ["8", INST_MODELS_NOTE]]),
        Stage("2. Learn the style", TRAIN, [["4", "30"], ["6", "5", "7", INST_VALIDATION_NOTE]]),
        Stage("3. Transfer in one node", GENERATE, [["9", "22", "10", "11"], ["12", "13"], ["14"]], new_row=True),
        Stage("4. The same transfer with stock SamplerCustomAdvanced", STOCK,
              [["15", "16", "18"], ["17", "19", "20"], ["21"]]),
    ]
    return Lesson(prompt, intro, stages, {"1": [CHECKPOINT], "2": [CLIP_VISION]})


STYLEFORGE_OPTIONS = dict(
    style_template="{} style", aux_prompt="style", min_aux_images=4, alpha=0.0, include_conv=False,
    text_encoder_lr=0.0, lr_schedule="constant", warmup_steps=0, batch_size=1, grad_accumulation=1,
    min_snr_gamma=0.0, noise_offset=0.0, crops_per_image=1, random_flip=True, gradient_checkpointing="auto",
    passes="auto", precision="auto", checkpoint_every=250, resume_from="[none]", aspect_buckets=False)
STYLEFORGE_TRAINING = dict(aux_weight=1.0, rank=16, steps=1000, unet_lr=1e-4, resolution=512, seed=0)
OPTIONS_NOTE = Note("Options", "**Options** (optional): LoRA alpha and layers, the text-encoder learning rate, "
                    "schedule, batch, memory, checkpoints every N steps, and **resume_from** a checkpoint (AdamW's "
                    "state is kept beside it, so a resumed run ends where an uninterrupted one would).", height=150)


def styleforge_generate(prompt: dict, trainer: str, text: str) -> None:
    """Sample with the trainer's LoRA-patched MODEL and CLIP, and save the image (nodes 10-15)."""
    prompt.update({
        "10": node("CLIPTextEncode", text=text, clip=[trainer, 1]),
        "11": node("CLIPTextEncode", "Negative", text="blurry, low quality", clip=[trainer, 1]),
        "12": node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "13": node("KSampler", model=[trainer, 0], positive=["10", 0], negative=["11", 0], latent_image=["12", 0],
                   seed=42, steps=25, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "14": node("VAEDecode", samples=["13", 0], vae=["1", 2]),
    })


def styleforge_training(trainer: str, name: str, validation_prompts: str) -> dict:
    return {
        "20": node("StyleForge_Options", checkpoint_name=f"styleforge/{name}_checkpoint", **STYLEFORGE_OPTIONS),
        "21": node("StylePersonalization_Validation", prompts=validation_prompts, every=100, seed=0, steps=20,
                   cfg=7.0, filename_prefix=f"validation/{name}"),
        "6": node("StyleForge_SaveLoRA", lora=[trainer, 2], filename=f"styleforge/{name}_style", precision="fp16"),
        "7": node("SaveImage", "Loss curve", images=[trainer, 3], filename_prefix=f"styleforge/{name}_loss"),
    }


def styleforge_single() -> Lesson:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT["name"]),
        "2": node("StyleForge_ImageSet", "StyleRef images ([V] style)", folder=f"{EXAMPLES}/styleref"),
        "3": node("StyleForge_ImageSet", "Aux images (style)", folder=f"{EXAMPLES}/aux"),
        "4": node("StyleForge_Train", model=["1", 0], clip=["1", 1], vae=["1", 2], style_images=["2", 0],
                  aux=["3", 0], token="zwx", options=["20", 0], validation=["21", 0], **STYLEFORGE_TRAINING),
        **styleforge_training("4", "single", "a portrait of a woman in a garden, zwx style\n"
                                             "a house by the sea, zwx style"),
    }
    styleforge_generate(prompt, "4", "a portrait of a woman in a garden, zwx style")
    prompt["15"] = node("SaveImage", images=["14", 0], filename_prefix="styleforge/single")
    intro = Note(INTRO_TITLE, "# Train a style LoRA from a few images (StyleForge)\n"
                 "Train StyleForge LoRA binds the style of the **StyleRef** images to `zwx style`, while the "
                 "**Aux** images keep the plain word `style` anchored (Park et al., *StyleForge*, 2024): one loss, "
                 "StyleRef + lambda x Aux. The LoRA loads in stock Load LoRA; prompt with `zwx style`.\n\n"
                 "**Your own images**: put 15-20 images of the style in a folder under ComfyUI/input (a `.txt` "
                 "beside an image is its caption) and about as many digital paintings of people for Aux, and "
                 "pick the folders in the two image sets (press R to list new folders; the examples are "
                 "pictures drawn by this package). "
                 + time_note("styleforge"), width=900, height=210)
    stages = [
        Stage("1. Load", LOAD, [["1", "2", "3", STYLEFORGE_MODELS_NOTE]]),
        Stage("2. Train the LoRA", TRAIN, [["4"], ["20", OPTIONS_NOTE],
                                          ["21", "6", "7", STYLEFORGE_VALIDATION_NOTE]]),
        Stage("3. Generate with zwx style", GENERATE, [["10", "11", "12"], ["13", "14"], ["15"]], new_row=True),
    ]
    return Lesson(prompt, intro, stages, {"1": [CHECKPOINT]})


def styleforge_multi() -> Lesson:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT["name"]),
        "2": node("StyleForge_ImageSet", "People ([V] style)", folder=f"{EXAMPLES}/people"),
        "3": node("StyleForge_ImageSet", "Backgrounds ([W] style)", folder=f"{EXAMPLES}/backgrounds"),
        "8": node("StyleForge_ImageSet", "Aux images (style)", folder=f"{EXAMPLES}/aux"),
        "5": node("StyleForge_TrainMulti", model=["1", 0], clip=["1", 1], vae=["1", 2], people=["2", 0],
                  backgrounds=["3", 0], aux=["8", 0], token="zwx", background_token="ohwx",
                  background_aux_weight=1.0, options=["20", 0], validation=["21", 0], **STYLEFORGE_TRAINING),
        **styleforge_training("5", "multi", "a portrait of a woman, zwx style, in a city street, ohwx style\n"
                                            "a quiet harbour, ohwx style"),
    }
    styleforge_generate(prompt, "5", "a portrait of a woman, zwx style, standing in a city street, ohwx style")
    prompt["15"] = node("SaveImage", images=["14", 0], filename_prefix="styleforge/multi")
    intro = Note(INTRO_TITLE, "# People and backgrounds in one LoRA (Multi-StyleForge)\n"
                 "Train Multi-StyleForge LoRA learns two bindings in turn: the **people** of the style to "
                 "`zwx style` and its **backgrounds** to `ohwx style`, each anchored by the Aux images with its "
                 "own lambda (Park et al., *StyleForge*, 2024). Prompt with both: `a woman, zwx style, in a "
                 "street, ohwx style`.\n\n**Your own images**: a folder of people and one of backgrounds in the "
                 "style, and Aux paintings of people, under ComfyUI/input (the examples are pictures drawn by "
                 "this package). " + time_note("styleforge"), width=900, height=210)
    stages = [
        Stage("1. Load", LOAD, [["1", "2", "3", "8", STYLEFORGE_MODELS_NOTE]]),
        Stage("2. Train the LoRA", TRAIN, [["5"], ["20", OPTIONS_NOTE],
                                          ["21", "6", "7", STYLEFORGE_VALIDATION_NOTE]]),
        Stage("3. Generate with zwx style and ohwx style", GENERATE, [["10", "11", "12"], ["13", "14"], ["15"]],
              new_row=True),
    ]
    return Lesson(prompt, intro, stages, {"1": [CHECKPOINT]})


# File name -> lesson. ComfyUI's template browser shows a custom node pack's template by its file
# name (as title and description), so the names say what each one teaches.
WORKFLOWS = {
    "InST - learn a painting style and generate with it": inst_train_and_generate,
    "InST - transfer a painting style onto a photo": inst_style_transfer,
    "StyleForge - train a style LoRA": styleforge_single,
    "StyleForge Multi - people and backgrounds in one LoRA": styleforge_multi,
}

# The frontend gives every seed a "control after generate" widget, "randomize" by default: a new seed
# at every queue, so a trainer would retrain when only a generation prompt changed. The bundled
# workflows keep every seed fixed (reproducible, and a re-queue reuses the trained result).
FIX_SEEDS_JS = ("for (const n of app.graph._nodes) for (const w of n.widgets || []) "
                "if (w.name === 'control_after_generate') w.value = 'fixed';")

# Lay the graph out with the sizes the frontend computed: the intro note on top, then one group per
# stage from left to right, each stage's columns inside it, nodes stacked with a gap. Nodes that show
# something after a run (a picture, an image output, a trainer's last validation image and summary)
# grow then; they get that room now, so what they show never lands on the node below.
LOAD_IMAGE_HEIGHT = 430
SHOWN_AFTER_RUN = {"SaveImage": 300, "PreviewImage": 300, "InST_TrainStyle": 330, "StyleForge_Train": 330,
                   "StyleForge_TrainMulti": 330}  # extra height for the output shown (px at 100%)
LAYOUT_JS = (f"const LOAD_IMAGE_HEIGHT = {LOAD_IMAGE_HEIGHT}, SHOWN_AFTER_RUN = {json.dumps(SHOWN_AFTER_RUN)};"
             + """
const g = app.graph, T = LiteGraph.NODE_TITLE_HEIGHT, GAP = 30, PAD = 24, GROUP_TITLE = 56, MARGIN = 40;
// Wide enough for the whole title and every one-line widget's name and value at 100% zoom.
const ctx = document.createElement("canvas").getContext("2d");
ctx.font = `${LiteGraph.NODE_TEXT_SIZE}px Arial`;
const textWidth = (text) => ctx.measureText(String(text)).width;
for (const n of g._nodes) {
  let width = textWidth(n.title) + 2 * T + 40;
  for (const w of n.widgets || [])
    if (typeof w.value === "string" && !w.element) width = Math.max(width, textWidth(w.name) + textWidth(w.value) + 90);
  // A Load Image node grows when its picture arrives, after this script: give it that room now.
  n.size = [Math.max(n.size[0], Math.ceil(width)),
            n.type === "LoadImage" ? LOAD_IMAGE_HEIGHT : n.size[1] + (SHOWN_AFTER_RUN[n.type] ?? 0)];
}
const note = (n) => {
  const node = LiteGraph.createNode("MarkdownNote");
  g.add(node);
  node.title = n.title;
  node.widgets[0].value = n.text;
  node.size = [n.width, n.height];
  return node;
};
for (const [id, models] of Object.entries(spec.models)) g.getNodeById(+id).properties.models = models;
const intro = note(spec.intro);
intro.pos = [MARGIN, MARGIN + T];
let x = MARGIN, top = MARGIN + T + spec.intro.height + MARGIN, rowBottom = top;
for (const stage of spec.stages) {
  if (stage.new_row) [x, top] = [MARGIN, rowBottom + MARGIN];
  let cx = x + PAD, right = cx, bottom = top + GROUP_TITLE;
  for (const column of stage.columns) {
    let cy = top + GROUP_TITLE, width = 0;
    for (const item of column) {
      const n = typeof item === "object" ? note(item) : g.getNodeById(+item);
      n.pos = [cx, cy + T];
      cy += T + n.size[1] + GAP;
      width = Math.max(width, n.size[0]);
    }
    bottom = Math.max(bottom, cy - GAP);
    right = cx + width;
    cx = right + GAP * 2;
  }
  const group = new LiteGraph.LGraphGroup(stage.title);
  g.add(group);
  group.pos = [x, top];
  group.size = [right + PAD - x, bottom + PAD - top];
  group.color = stage.color;
  x = right + PAD + MARGIN;
  rowBottom = Math.max(rowBottom, bottom + PAD);
}
g.setDirtyCanvas(true, true);
""")


def serialize_in_frontend(page: HeadlessChromium, lesson: Lesson, name: str) -> dict:
    spec = {"models": lesson.models, "intro": lesson.intro.__dict__,
            "stages": [{"title": s.title, "color": s.color, "new_row": s.new_row,
                        "columns": [[i.__dict__ if isinstance(i, Note) else i for i in c] for c in s.columns]}
                       for s in lesson.stages]}
    js = (f"(async () => {{ const spec = {json.dumps(spec)}; await app.loadApiJson({json.dumps(lesson.prompt)}, "
          f"{json.dumps(name)}); {FIX_SEEDS_JS} {LAYOUT_JS} return JSON.stringify(app.graph.serialize()); }})()")
    workflow = json.loads(page.evaluate(js, await_promise=True, timeout=120))
    workflow["models"] = [model for models in lesson.models.values() for model in models]
    workflow.setdefault("extra", {})["ds"] = OPENING_VIEW
    return workflow


def without_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def main() -> int:
    server = ComfyServer(DEVHOST / "logs" / "make-workflows.log")
    try:
        server.start()
        object_info = server.get("/object_info")
        with frontend_page(server.url, DEVHOST / "logs" / "make-workflows-chromium.log") as page:
            for name, build in WORKFLOWS.items():
                lesson = build()
                workflow = serialize_in_frontend(page, lesson, name)
                converted = without_meta(ui_to_api(workflow, object_info))
                if converted != without_meta(lesson.prompt):
                    print(f"make_workflows: {name} does not convert back to its prompt", file=sys.stderr)
                    return 1
                path = TEMPLATES / f"{name}.json"
                path.parent.mkdir(exist_ok=True)
                path.write_text(json.dumps(workflow, indent=1) + "\n")
                print(f"wrote {path.relative_to(TEMPLATES.parent)}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
