"""Every bundled workflow (UI format, as users open it) runs through the real server on the tiny models."""

import json
from pathlib import Path

import pytest

from devhost.example_inputs import write_examples
from devhost.paths import BASE_DIR, REPO_ROOT
from devhost.run_examples import shrink_for_tiny_models
from devhost.ui_workflow import ui_to_api

WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
TRAINING_STEPS_IN_TESTS = 4


def test_every_bundled_workflow_is_shipped():
    assert [p.stem for p in WORKFLOWS] == ["inst_style_transfer", "inst_train_and_generate", "styleforge_multi",
                                           "styleforge_single"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_bundled_workflow_runs_on_the_tiny_models(comfy_server, path: Path):
    write_examples(BASE_DIR / "input")
    prompt = ui_to_api(json.loads(path.read_text()), comfy_server.get("/object_info"))
    shrink_for_tiny_models(prompt)
    for node in prompt.values():
        if node["class_type"].endswith(("_TrainStyle", "_Train")):
            node["inputs"]["steps"] = TRAINING_STEPS_IN_TESTS
    since = len(comfy_server.log_text())
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    saved = [f for node_id in result.outputs for f in comfy_server.output_files(result, node_id)]
    assert saved and all(f.exists() for f in saved)
    assert comfy_server.log_problems(since) == []


def test_workflows_are_served_as_templates(comfy_server):
    templates = comfy_server.get("/api/workflow_templates")
    assert sorted(templates["inst_styleforge"]) == sorted(p.stem for p in WORKFLOWS)
