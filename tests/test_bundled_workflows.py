"""Every bundled template, as a user meets it, on the pinned frontend and on the newest: opened from
ComfyUI's template browser in the real frontend (headless Chromium), the missing models read as that
frontend reports them (and the shipped pictures not reported missing), its models set to the tiny ones
and its sizes shrunk in the frontend's widgets, queued from the UI (the frontend's own Queue command,
which turns the graph into a prompt itself), and run to the end through the real server with the
example inputs the package ships. After the run no node overlaps another, and the trainer's summary is
on it, and again after a tab switch. A second queue after changing only a generation prompt comes from
ComfyUI's cache, trainer included. The main job turns the same files into prompts with
devhost.ui_workflow (no browser); each template's conversion is checked here against what the frontend
queues for it."""

import json
import time
import uuid

import pytest

from devhost.frontend_actions import (
    RESULTS_SHOWN_S,
    node_text_js,
    open_from_template_browser,
    overlapping_nodes,
    queue_from_ui,
    set_widgets,
)
from devhost.paths import BASE_DIR, TEMPLATES
from devhost.run_examples import MODEL_SUBSTITUTES, TRAINERS, tiny_run
from devhost.ui_workflow import ui_to_api

TEMPLATE_FILES = sorted(TEMPLATES.glob("*.json"))
TRAINING_STEPS_IN_TESTS = 1
# The generation prompt a user changes between queues, by template: (node id, new text).
GENERATION_PROMPT = {
    "InST - learn a painting style and generate with it": (9, "a lighthouse at dusk in the style of *"),
    "InST - transfer a painting style onto a photo": (9, "an oil painting in the style of *"),
    "StyleForge - train a style LoRA": (10, "a lighthouse at dusk, zwx style"),
    "StyleForge Multi - people and backgrounds in one LoRA": (10, "a man, zwx style, in a park, ohwx style"),
}


def missing_models_report(ui) -> str:
    """What the frontend says the dev host lacks, from the workflow's download metadata, read as a user
    would: frontend 1.32 opens a Missing Models dialog (closed here); 1.58 notes "issues found", whose
    View details opens the Workflow Overview's Issues panel."""
    page = ui.page
    if ui.frontend == "pinned":
        dialog = "[...document.querySelectorAll('[role=dialog]')].find(d => d.textContent.includes('Missing Models'))"
        page.wait_for(f"!!{dialog}", timeout=30)
        text = page.evaluate(f"{dialog}.textContent")
        page.evaluate(f"{dialog}.querySelector('button[aria-label=Close], .p-dialog-close-button').click()")
        page.wait_for(f"!{dialog}", timeout=30)
        return text
    # found and clicked in one step: the notice re-renders while the workflow settles (seen: the button
    # found, then gone by the next call)
    page.wait_for("(b => !!b && (b.click(), true))([...document.querySelectorAll('button')]"
                  ".find(b => b.textContent.trim() === 'View details'))", timeout=30)
    page.wait_for("document.body.innerText.includes('Missing Models')", timeout=30)
    text = page.evaluate("document.body.innerText")
    return text[text.index("Workflow Overview"):]


def download_requests(page, names: list[str]) -> dict[str, dict]:
    """What frontend 1.58 asks the browser for when each named model's Download is clicked in the Issues
    panel: the link and the file name. Link clicks are recorded, not followed (the tests run offline). A
    browser keeps that name for same-site links only; ComfyUI Desktop saves under it into the folder."""
    page.evaluate("window.__downloads = {}; HTMLAnchorElement.prototype.click = function () "
                  "{ window.__downloads[this.download] = {url: this.href, name: this.download}; }")
    for name in names:
        page.evaluate(f"document.querySelector('button[aria-label={json.dumps('Download ' + name)}]').click()")
    page.wait_for(f"Object.keys(window.__downloads).length === {len(names)}", timeout=10)
    return page.evaluate("window.__downloads")


def template_models(path) -> list[dict]:
    """The model files a template lists for download (name, folder, link), from its loaders."""
    nodes = json.loads(path.read_text())["nodes"]
    return [model for n in nodes for model in n.get("properties", {}).get("models", [])]


def without_titles(prompt: dict) -> dict:
    """A prompt as the server runs it: the `_meta` titles are only for people reading it."""
    return {node_id: {k: v for k, v in node.items() if k != "_meta"} for node_id, node in prompt.items()}


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_template_opened_and_queued_in_the_frontend_runs_and_requeues_from_cache(ui, object_info, path):
    page, server = ui.page, ui.server
    open_from_template_browser(page, path.stem)
    missing = missing_models_report(ui)
    assert "v1-5-pruned-emaonly-fp16.safetensors" in missing and "checkpoints" in missing and "Download" in missing
    assert "no file selected" not in missing and "Missing Inputs" not in missing  # the shipped pictures are found
    models = template_models(path)
    assert all(m["name"] in missing and m["directory"] in missing for m in models)
    if ui.frontend == "newest":  # each download is asked for under the name the template's loader uses
        requested = download_requests(page, [m["name"] for m in models])
        assert requested == {m["name"]: {"url": m["url"], "name": m["name"]} for m in models}
    # the main job converts templates with devhost.ui_workflow: it gives what the frontend itself queues
    queued_by_frontend = page.evaluate("app.graphToPrompt().then((prompt) => prompt.output)", await_promise=True)
    converted = ui_to_api(json.loads(path.read_text()), object_info)
    if ui.frontend == "newest":  # it titles untitled nodes by its own translated names ('CFG Guider'), not sent
        converted, queued_by_frontend = (without_titles(p) for p in (converted, queued_by_frontend))
    assert converted == queued_by_frontend
    set_widgets(page, tiny_run(TRAINING_STEPS_IN_TESTS), MODEL_SUBSTITUTES, {})
    first, first_s = queue_from_ui(page, server)
    assert first.ok, first.error
    saved = [f for node_id in first.outputs for f in server.output_files(first, node_id)]
    assert saved and all(f.exists() for f in saved)
    # what the run shows (pictures, the trainer's validation image and summary) lands on no other node
    time.sleep(RESULTS_SHOWN_S)
    assert overlapping_nodes(page) == []
    # the trainer's summary stays on it after the run and comes back after a tab switch (from the outputs)
    [trainer] = [str(n["id"]) for n in json.loads(path.read_text())["nodes"] if n["type"] in TRAINERS]
    summary = first.outputs[trainer]["text"][0]
    assert summary.startswith("eval loss ")
    page.wait_for(f"{node_text_js(trainer)} === {json.dumps(summary)}", timeout=10)
    page.evaluate("app.extensionManager.command.execute('Comfy.NewBlankWorkflow')", await_promise=True)
    page.wait_for(f"{node_text_js(trainer)} !== {json.dumps(summary)}", timeout=10)
    page.evaluate("app.extensionManager.command.execute('Workspace.PreviousOpenedWorkflow')", await_promise=True)
    page.wait_for(f"{node_text_js(trainer)} === {json.dumps(summary)}", timeout=10)

    node_id, text = GENERATION_PROMPT[path.stem]
    set_widgets(page, {}, {}, {node_id: {"text": text}})
    second, second_s = queue_from_ui(page, server)
    assert second.ok, second.error
    cached = {node for kind, body in second.messages if kind == "execution_cached" for node in body["nodes"]}
    assert trainer in cached, "the trainer ran again"  # times are quoted, not asserted: see bench/
    print(f"{path.stem} ({ui.frontend} frontend): first queue {first_s:.1f} s, re-queue with a new generation "
          f"prompt {second_s:.1f} s")


def test_a_cancelled_trainer_says_what_it_kept_and_the_checkpoint_is_listed_to_resume_from(ui):
    """Cancel from the UI once a checkpoint is written: the trainer says where it stopped and which
    checkpoint is kept, and resume_from lists that checkpoint without a restart or a manual refresh."""
    page = ui.page
    name = f"styleforge_test/ui_cancel_{uuid.uuid4().hex[:8]}"  # new: in no list the page has
    checkpoint = BASE_DIR / "models" / "loras" / f"{name}.safetensors"
    template = json.loads((TEMPLATES / "StyleForge - train a style LoRA.json").read_text())
    page.evaluate(f"app.loadGraphData({json.dumps(template)})", await_promise=True)
    set_widgets(page, {**tiny_run(training_steps=500),
                       "StyleForge_Options": {"checkpoint_every": 1, "checkpoint_name": name}},
                MODEL_SUBSTITUTES, {})
    resume_from = ("app.graph._nodes.find(n => n.type === 'StyleForge_Options').widgets"
                   ".find(w => w.name === 'resume_from').options.values")
    assert not page.evaluate(f"{resume_from}.includes({json.dumps(name + '.safetensors')})")
    page.evaluate("app.extensionManager.command.execute('Comfy.QueuePrompt')", await_promise=True)
    deadline = time.time() + 120
    while not checkpoint.exists():
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    page.evaluate("app.extensionManager.command.execute('Comfy.Interrupt')", await_promise=True)
    trainer = page.evaluate("app.graph._nodes.find(n => n.type === 'StyleForge_Train').id")
    page.wait_for(f"{node_text_js(trainer)}?.startsWith('Cancelled after step ')", timeout=60)
    text = page.evaluate(node_text_js(trainer))
    assert f"is kept: to go on from it, choose {name}.safetensors in resume_from." in text
    page.wait_for(f"{resume_from}.includes({json.dumps(name + '.safetensors')})", timeout=30)


def test_workflows_are_served_as_templates(comfy_server):
    templates = comfy_server.get("/api/workflow_templates")
    assert sorted(templates["inst_styleforge"]) == sorted(p.stem for p in TEMPLATE_FILES)


def test_bundled_workflows_keep_every_seed_fixed_between_queues():
    """The frontend re-rolls a seed whose control is "randomize" at every queue, which would retrain."""
    for path in TEMPLATE_FILES:
        for node in json.loads(path.read_text())["nodes"]:
            controls = [v for v in node.get("widgets_values", []) if v in ("randomize", "increment", "decrement")]
            assert not controls, f"{path.stem}: {node['type']} seed control is {controls}"
