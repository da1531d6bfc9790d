"""Screenshots of every bundled workflow in the real ComfyUI frontend at 100% zoom after a run, for the
README (`docs/screenshots/<slug>.png`) and as the template browser's thumbnails
(`example_workflows/<name>.jpg`, which ComfyUI serves beside each template), and the template browser
showing them. One command regenerates them all:

    .devhost/venv/bin/python -m devhost.screenshots [--main-job out/examples-...]

Each workflow is opened with the frontend's own loader, run from the UI on the tiny test models
(random weights: its pictures are noise) with a few training steps, its widgets then set back to the
template's own values, so the picture shows the template as shipped with every result in place. The
canvas is set to scale 1 with the graph's top-left corner in view, and the page is made large enough
to hold the whole graph.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

from .browser import DESKTOP_VIEWPORT, HeadlessChromium, frontend_page
from .comfy_server import ComfyServer
from .frontend_actions import RESULTS_SHOWN_S, queue_from_ui, set_widgets
from .paths import DEVHOST, REPO_ROOT, TEMPLATES
from .run_examples import MODEL_SUBSTITUTES, tiny_run

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
MARGIN = 120  # CSS pixels kept free around the graph, clear of the frontend's side bar and corner widgets
THUMBNAIL = (800, 600)  # the template browser's cards are 4:3
THUMBNAIL_SOURCE_WIDTH = 1400  # graph pixels a thumbnail shows across
BACKGROUND = (32, 32, 32)
TEMPLATE_BROWSER = "template_browser"
ICON_SIDE = 400  # the Registry's largest icon
WORKFLOW_WITH_SCORES = "InST - learn a painting style and generate with it"
# The run behind each screenshot: the tiny models, a few steps, a validation round every other step.
SCREENSHOT_RUN = {**tiny_run(training_steps=4), "StylePersonalization_Validation": {"every": 2, "steps": 4},
                  "StyleForge_Options": {"checkpoint_every": 0}}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def graph_bounds(workflow: dict) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of every node (title bar included) and group, in graph units."""
    boxes = [(n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in workflow["nodes"]]
    boxes += [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
               g["bounding"][1] + g["bounding"][3]) for g in workflow.get("groups", [])]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def capture(page: HeadlessChromium, server: ComfyServer, workflow: dict) -> Image.Image:
    """The workflow after a run (SCREENSHOT_RUN), showing the template's own widget values."""
    options = "{showMissingModelsDialog: false}"  # the dev host has the tiny models under other names
    load = f"app.loadGraphData({json.dumps(workflow)}, true, true, null, {options})"
    page.evaluate(f"(async () => {{ await {load}; }})()", await_promise=True)
    shipped = page.evaluate("Object.fromEntries(app.graph._nodes.map(n => "
                            "[n.id, Object.fromEntries((n.widgets || []).map(w => [w.name, w.value]))]))")
    set_widgets(page, SCREENSHOT_RUN, MODEL_SUBSTITUTES, {})
    result, _ = queue_from_ui(page, server)
    if not result.ok:
        raise RuntimeError(f"the run for the screenshot failed: {result.error}")
    set_widgets(page, {}, {}, shipped)
    time.sleep(RESULTS_SHOWN_S)
    left, top, right, bottom = graph_bounds(json.loads(page.evaluate("JSON.stringify(app.graph.serialize())")))
    width, height = int(right - left), int(bottom - top)
    page.set_viewport(width + 3 * MARGIN, height + 3 * MARGIN)
    rect = page.evaluate(f"""(() => {{
        const ds = app.canvas.ds;
        ds.scale = 1;
        ds.offset = [{MARGIN - left}, {MARGIN - top}];
        app.canvas.setDirty(true, true);
        const r = app.canvas.canvas.getBoundingClientRect();
        return [r.left, r.top];
    }})()""")
    time.sleep(1.0)  # let the canvas and its DOM widgets redraw at the new offset
    png = page.screenshot(rect[0] + MARGIN - 10, rect[1] + MARGIN - 10, width + 20, height + 20)
    return Image.open(io.BytesIO(png)).convert("RGB")


def capture_template_browser(page: HeadlessChromium) -> Image.Image:
    """ComfyUI's template browser on this package's category, as a user first sees the templates."""
    page.set_viewport(1400, 900)
    page.evaluate("app.extensionManager.command.execute('Comfy.BrowseTemplates')", await_promise=True)
    cards = "[...document.querySelectorAll('[data-testid^=\"template-workflow-\"] img')]"
    page.wait_for(f"{cards}.length >= 4 && {cards}.every(i => i.complete && i.naturalWidth > 0) || void "
                  "[...document.querySelectorAll('[role=dialog] span')].find(e => "
                  "e.textContent.trim() === 'inst_styleforge')?.click()", timeout=60)
    time.sleep(1.0)
    png = page.screenshot(0, 0, 1400, 900)
    page.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
    return Image.open(io.BytesIO(png)).convert("RGB")


def thumbnail(image: Image.Image) -> Image.Image:
    """The top-left of the graph (the intro note, loading and training), legible on a 4:3 card."""
    width = min(image.width, THUMBNAIL_SOURCE_WIDTH)
    height = width * THUMBNAIL[1] // THUMBNAIL[0]
    card = Image.new("RGB", (width, height), BACKGROUND)
    card.paste(image.crop((0, 0, width, min(height, image.height))), (0, 0))
    return card.resize(THUMBNAIL, Image.LANCZOS)


def write_icon() -> None:
    """The Registry's icon (pyproject's Icon links to it): the shipped example painting, square."""
    with Image.open(REPO_ROOT / "example_inputs" / "painting.jpg") as painting:
        side = min(painting.size)
        left, top = (painting.width - side) // 2, (painting.height - side) // 2
        square = painting.convert("RGB").crop((left, top, left + side, top + side))
    square.resize((ICON_SIDE, ICON_SIDE), Image.LANCZOS).save(REPO_ROOT / "docs" / "icon.png", optimize=True)


def copy_main_job_pictures(run: Path) -> None:
    """The first template's loss-and-score curve and validation grid from a main-job output folder
    (scripts/run_examples.sh), for the README."""
    folder = run / WORKFLOW_WITH_SCORES
    [curve] = sorted(folder.rglob("*_curve.png"))[-1:]
    shutil.copyfile(curve, REPO_ROOT / "docs" / "main_job_curve.png")
    shutil.copyfile(folder / "validation_grid.png", REPO_ROOT / "docs" / "main_job_validation_grid.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main-job", type=Path, help="also copy the curve and validation grid from this main-job "
                        "output folder (out/examples-...) into docs/")
    args = parser.parse_args()
    if args.main_job:
        copy_main_job_pictures(args.main_job)
    server = ComfyServer(DEVHOST / "logs" / "screenshots.log")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        server.start()
        with frontend_page(server.url, DEVHOST / "logs" / "screenshots-chromium.log", DESKTOP_VIEWPORT) as page:
            for path in sorted(TEMPLATES.glob("*.json")):
                image = capture(page, server, json.loads(path.read_text()))
                image.save(SCREENSHOTS / f"{slug(path.stem)}.png", optimize=True)
                thumbnail(image).save(path.with_suffix(".jpg"), quality=85)
                print(f"{path.stem}: {image.width}x{image.height}")
            capture_template_browser(page).save(SCREENSHOTS / f"{TEMPLATE_BROWSER}.png", optimize=True)
        write_icon()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
