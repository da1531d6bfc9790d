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


def test_bundled_workflows_keep_every_seed_fixed_between_queues():
    """The frontend re-rolls a seed whose control is "randomize" at every queue, which would retrain."""
    for path in WORKFLOWS:
        for node in json.loads(path.read_text())["nodes"]:
            controls = [v for v in node.get("widgets_values", []) if v in ("randomize", "increment", "decrement")]
            assert not controls, f"{path.stem}: {node['type']} seed control is {controls}"


def test_requeue_with_a_new_generation_prompt_reuses_the_trained_style(comfy_server):
    write_examples(BASE_DIR / "input")
    prompt = ui_to_api(json.loads((REPO_ROOT / "workflows" / "inst_train_and_generate.json").read_text()),
                       comfy_server.get("/object_info"))
    shrink_for_tiny_models(prompt)
    trainer = next(i for i, n in prompt.items() if n["class_type"] == "InST_TrainStyle")
    prompt[trainer]["inputs"]["steps"] = TRAINING_STEPS_IN_TESTS + 2  # not cached from another test
    first = comfy_server.run(prompt)
    conditioning = next(n for n in prompt.values() if n["class_type"] == "InST_StyleConditioning")
    conditioning["inputs"]["text"] = "a lighthouse at dusk in the style of *"
    second = comfy_server.run(prompt)
    assert first.ok and second.ok, (first.error, second.error)
    cached = {node for kind, body in second.messages if kind == "execution_cached" for node in body["nodes"]}
    assert trainer in cached, "the trainer ran again"
    print(f"first queue {first.wall_s:.1f} s, re-queue with a new prompt {second.wall_s:.1f} s")
