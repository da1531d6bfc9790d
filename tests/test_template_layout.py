"""The bundled templates read as lessons: a note on top, every node in a stage group, nothing
overlapping at 100% zoom (checked from the node and group bounding boxes the frontend saved), model
download links for every model a loader names, a thumbnail beside each template, and a screenshot
of each in docs/ for the README."""

import json
from itertools import combinations

import pytest

from devhost.browser import DESKTOP_VIEWPORT
from devhost.make_workflows import INTRO_TITLE
from devhost.paths import REPO_ROOT, TEMPLATES
from devhost.screenshots import SCREENSHOTS, slug

TEMPLATE_FILES = sorted(TEMPLATES.glob("*.json"))
TITLE_HEIGHT = 30  # LiteGraph's node title bar, drawn above a node's pos
TITLE_CHAR_WIDTH = 6.0
SIDE_BAR = 64  # CSS pixels the frontend's side bar covers at the left of the canvas (at most)
LOADER_INPUTS = {"CheckpointLoaderSimple": "checkpoints", "CLIPVisionLoader": "clip_vision"}


def _node_box(node: dict) -> tuple[float, float, float, float]:
    x, y = node["pos"]
    w, h = node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + h


def _group_box(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return x, y, x + w, y + h


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_there_are_four_templates_named_for_what_they_teach():
    assert [p.stem for p in TEMPLATE_FILES] == [
        "InST - learn a painting style and generate with it", "InST - transfer a painting style onto a photo",
        "StyleForge - train a style LoRA", "StyleForge Multi - people and backgrounds in one LoRA"]


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_no_two_nodes_or_groups_overlap_and_every_node_sits_in_one_stage(path):
    workflow = json.loads(path.read_text())
    nodes = {n["id"]: _node_box(n) for n in workflow["nodes"]}
    overlapping = [(a, b) for (a, box_a), (b, box_b) in combinations(nodes.items(), 2) if _overlap(box_a, box_b)]
    assert overlapping == []
    groups = [_group_box(g) for g in workflow["groups"]]
    assert len(groups) >= 3 and not any(_overlap(a, b) for a, b in combinations(groups, 2))
    intro = [n for n in workflow["nodes"] if n.get("title") == INTRO_TITLE]
    assert len(intro) == 1 and intro[0]["type"] == "MarkdownNote"
    for node in workflow["nodes"]:
        if node is not intro[0]:
            assert sum(_inside(nodes[node["id"]], g) for g in groups) == 1, f"{node['type']} is not in one group"
    assert nodes[intro[0]["id"]][3] < min(g[1] for g in groups), "the intro note is above every group"


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_the_saved_view_opens_at_100_percent_on_the_whole_intro_note(path):
    workflow = json.loads(path.read_text())
    view = workflow["extra"]["ds"]
    [intro] = [_node_box(n) for n in workflow["nodes"] if n.get("title") == INTRO_TITLE]
    left, top, right, bottom = ((v + view["offset"][i % 2]) * view["scale"] for i, v in enumerate(intro))
    assert view["scale"] == 1.0
    assert SIDE_BAR <= left and right <= DESKTOP_VIEWPORT[0] and 0 <= top and bottom <= DESKTOP_VIEWPORT[1]


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_every_title_fits_its_node_at_100_percent(path):
    """LiteGraph cuts a title that does not fit with an ellipsis; 14 px Arial averages about 6 px a
    character (measured in the frontend when the layout was made)."""
    for node in json.loads(path.read_text())["nodes"]:
        title = node.get("title") or node["type"]
        assert node["size"][0] >= TITLE_CHAR_WIDTH * len(title) + 2 * TITLE_HEIGHT, title


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_every_model_a_loader_names_has_a_download_link(path):
    workflow = json.loads(path.read_text())
    listed = {(m["directory"], m["name"]): m["url"] for m in workflow["models"]}
    for node in workflow["nodes"]:
        if node["type"] in LOADER_INPUTS:
            key = (LOADER_INPUTS[node["type"]], node["widgets_values"][0])
            assert listed[key].startswith("https://huggingface.co/") and listed[key].endswith(".safetensors")
            assert node["properties"]["models"] == [{"name": key[1], "directory": key[0], "url": listed[key]}]


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_each_template_has_a_thumbnail_and_a_screenshot_in_the_readme(path):
    assert path.with_suffix(".jpg").stat().st_size > 10_000
    screenshot = SCREENSHOTS / f"{slug(path.stem)}.png"
    assert screenshot.stat().st_size > 50_000
    assert str(screenshot.relative_to(REPO_ROOT)) in (REPO_ROOT / "README.md").read_text()
