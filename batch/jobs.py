"""One batch job, run in a process that has ComfyUI and the models loaded: the same trainer cores,
files and formats the nodes use, written atomically into the output folder laid out like ComfyUI's
models folder (inst_styles/, embeddings/, loras/). A job whose file is already there with the same
training settings and data is done, and is skipped."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import host
from ..inst_core.embedding_export import embedding_name, save_embedding
from ..inst_core.style import ImageFeatures
from ..inst_core.style_file import STYLE_FOLDER, load_style
from ..inst_core.training import InSTTrainingConfig, check_config, train_style
from ..styleforge_core.datasets import load_folder
from ..styleforge_core.lora_file import LORA_FOLDER, load_lora, save_lora
from ..styleforge_core.training import StyleForgeConfig, TrainingSets, check_inputs, train_styleforge
from ..training_kit.errors import InputError
from ..training_kit.files import safe_relative_name
from ..training_kit.images import image_sha256, read_image, require_image
from .manifest import Job

EMBEDDINGS_FOLDER = "embeddings"
LORA_PRECISION = "fp16"  # as Save StyleForge LoRA's default


@dataclass
class Models:
    """What every job of a worker shares, loaded once."""

    model: object
    clip: object
    vae: object
    clip_vision: object | None

    @classmethod
    def load(cls, checkpoint: Path, clip_vision: Path | None) -> Models:
        with torch.inference_mode():
            model, clip, vae = host.models.load_checkpoint(checkpoint)
            vision = host.models.load_clip_vision(clip_vision) if clip_vision else None
        return cls(model, clip, vae, vision)


@dataclass
class JobReport:
    row: int
    kind: str
    name: str
    status: str  # done, skipped, failed
    seconds: float = 0.0
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    files: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    attempts: int = 1
    node: str | None = None  # the Ray node that trained it (on a cluster: where to look for its logs)


def output_files(job: Job, out: Path) -> list[Path]:
    if job.kind == "inst":
        return [out / STYLE_FOLDER / f"{job.name}.safetensors", out / EMBEDDINGS_FOLDER / f"{job.name}.safetensors"]
    return [out / LORA_FOLDER / f"{job.name}.safetensors"]


def _painting(job: Job) -> torch.Tensor:
    try:
        return read_image(host.files.input_directory() / job.inputs["painting"])
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise InputError("painting", f"'{job.inputs['painting']}' is not a readable image ({error}).",
                         "Use a PNG, JPEG or WebP file.") from None


def _inst_config(job: Job) -> InSTTrainingConfig:
    return InSTTrainingConfig(**job.settings)


def _styleforge_config(job: Job) -> StyleForgeConfig:
    method = "Multi" if "backgrounds" in job.inputs else "Single"
    return StyleForgeConfig(method=method, **{"alpha": float(job.settings.get("rank", StyleForgeConfig.rank)),
                                              **job.settings})


def _sets(job: Job) -> TrainingSets:
    loaded = {key: load_folder(folder, key) for key, folder in job.inputs.items()}
    return TrainingSets(loaded["style_images"], loaded.get("aux"), loaded.get("backgrounds"))


def check_job(job: Job) -> None:
    """The row checked as its node checks it (the name as the save nodes take it, the settings against
    the trainer's ranges, the images as the trainer reads them), by the trainers' own checks: run where
    the manifest is read, so a bad row stops the batch before anything trains."""
    if job.kind == "inst":
        embedding_name(job.name, "name")  # stock prompts use the exported embedding by this name
        check_config(_inst_config(job))
        require_image(_painting(job), "painting")
    else:
        safe_relative_name(job.name, "name")
        check_inputs(_styleforge_config(job), _sets(job))


def already_done(job: Job, out: Path) -> bool:
    """Its files exist and were trained with this row's settings on this row's data."""
    files = output_files(job, out)
    if not all(f.exists() for f in files):
        return False
    try:
        if job.kind == "inst":
            training = load_style(files[0]).spec.training
            wanted = dataclasses.asdict(_inst_config(job))
            return (all(training.get(k) == v for k, v in wanted.items())
                    and training.get("painting_sha256") == [image_sha256(_painting(job))])
        metadata = load_lora(files[0], "name").metadata
        sets = _sets(job)
        hashes = {name: s.sha256() for name, s in (("styleref" if sets.backgrounds is None else "people", sets.style),
                                                    ("aux", sets.aux), ("backgrounds", sets.backgrounds)) if s}
        return (metadata["settings"] == dataclasses.asdict(_styleforge_config(job))
                and {k: v["sha256"] for k, v in metadata["datasets"].items()} == hashes)
    except (InputError, KeyError, json.JSONDecodeError):
        return False


def run_job(models: Models, job: Job, out: Path) -> JobReport:
    """Train one row and write its files; an error in the row's inputs fails this job alone."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        if job.kind == "inst":
            result = _run_inst(models, job, out)
        else:
            result = _run_styleforge(models, job, out)
    return JobReport(job.row, job.kind, job.name, "done", round(time.perf_counter() - t0, 2), result.eval_before,
                     result.eval_after, [str(f.relative_to(out)) for f in output_files(job, out)])


def _run_inst(models: Models, job: Job, out: Path):
    if models.clip_vision is None:
        raise InputError("clip_vision", "is needed for InST rows.", "Pass --clip-vision with a ViT-L/14 file.")
    painting = _painting(job)
    style_path, embedding_path = output_files(job, out)
    result = train_style(models.model, models.clip, models.vae, models.clip_vision, [painting], _inst_config(job),
                         save_to=style_path)
    features = ImageFeatures.from_clip_vision_output(host.images.clip_vision_encode(models.clip_vision, painting))
    save_embedding(result.trained, features, embedding_path)
    return result


def _run_styleforge(models: Models, job: Job, out: Path):
    [lora_path] = output_files(job, out)
    result = train_styleforge(models.model, models.clip, models.vae, _sets(job), _styleforge_config(job))
    save_lora(result.trained, lora_path, LORA_PRECISION)
    return result
