"""What a trainer node shows when it ends: the loss curve (with the validation scores), the last
validation round's images, and a summary with the best step; the curve is also saved beside the
validation images."""

from pathlib import Path

from comfy_api.latest import io, ui

from .. import host
from ..training_kit.images import to_pil
from ..training_kit.loss_curve import loss_curve_image
from ..training_kit.result import TrainingResult


def finished(cls: type[io.ComfyNode], result: TrainingResult, title: str,
             progress_bar: host.progress.StepProgress) -> tuple:
    """(the loss-curve IMAGE, the node's ui) for a finished run; leaves the summary on the node and puts
    it in the ui as "text" (web/js/training_results.js shows it again from there)."""
    validation = result.validation
    scores = validation.scores() if validation is not None else []
    summary = f"eval loss {result.eval_before:.4f} -> {result.eval_after:.4f}"
    curve = loss_curve_image(result.losses, f"{title} ({summary})", scores, result.start_step)
    shown = ui.PreviewImage(curve, cls=cls).as_dict()
    if validation is not None:
        validation.save_curve(to_pil(curve))
        summary += "; " + validation.summary()
        shown["images"] += [ui.SavedResult(path.name, "" if path.parent == Path(".") else path.parent.as_posix(),
                                           io.FolderType.output) for path in validation.rounds[-1].files]
    progress_bar.update(progress_bar.total, summary)
    shown["text"] = [summary]  # kept with the outputs: in the history, and shown again after a tab switch
    return curve, shown
