"""`devhost.ui_workflow.ui_to_api` against the real server's node definitions and the real frontend.

The unit tests convert small hand-built UI workflows with the `/object_info` of the session's server
(`comfy_server` from conftest.py); the end-to-end tests build graphs in the real ComfyUI frontend
(headless Chromium) and check that the conversion equals what the frontend's own `app.graphToPrompt()`
queues.
"""

from __future__ import annotations

import json
import random

import pytest

from devhost.browser import HeadlessChromium
from devhost.ui_workflow import process_dynamic_prompt, ui_to_api, widget_slots

CHECKPOINT = "tiny_sd15_taesd.safetensors"
# Nodes whose frontend extension adds widgets /object_info does not describe: ui_to_api refuses them.
REFUSED_NODES = ("Load3D", "Preview3D", "SaveGLB")
# Nodes the all-node comparison leaves out, and why.
UNCOMPARABLE_NODES = {
    "WebcamCapture": "serialising its widget captures a camera frame",
    "PreviewAny": "the frontend also sends the text of its preview widget, which /object_info does not describe",
    "LoadImageOutput": "its file list loads asynchronously, so its value can change between two reads",
}


# --- hand-built UI workflows --------------------------------------------------------------------------------


def _node(node_id: int, node_type: str, widgets_values: list | None = None, inputs: list | None = None,
          outputs: list | None = None, mode: int = 0) -> dict:
    """A UI-format node; inputs and outputs as (name, type[, link]) tuples, a widget input as a 4-tuple
    ending in True."""
    node = {"id": node_id, "type": node_type, "mode": mode, "properties": {},
            "inputs": [_slot(*spec) for spec in inputs or []],
            "outputs": [{"name": name, "type": kind, "links": []} for name, kind in outputs or []]}
    if widgets_values is not None:
        node["widgets_values"] = widgets_values
    return node


def _slot(name: str, kind: str, link: int | None = None, widget: bool = False) -> dict:
    slot = {"name": name, "type": kind, "link": link}
    if widget:
        slot["widget"] = {"name": name}
    return slot


def _workflow(nodes: list[dict], links: list[list] = ()) -> dict:
    return {"nodes": nodes, "links": list(links), "version": 0.4}


def _ksampler(node_id: int = 3, inputs: list | None = None) -> dict:
    return _node(node_id, "KSampler", [42, "randomize", 20, 7.5, "euler", "normal", 1.0], inputs,
                 [("LATENT", "LATENT")])


def _checkpoint(node_id: int = 1) -> dict:
    return _node(node_id, "CheckpointLoaderSimple", [CHECKPOINT], outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"),
                                                                          ("VAE", "VAE")])


def _decode_and_save(vae_link: int, image_link: int) -> list[dict]:
    """VAEDecode (node 8) fed by `vae_link`, and SaveImage (node 9) fed by `image_link`."""
    decode = _node(8, "VAEDecode", [], [("samples", "LATENT"), ("vae", "VAE", vae_link)],
                   [("IMAGE", "IMAGE")])
    save = _node(9, "SaveImage", ["out"], [("images", "IMAGE", image_link)])
    return [decode, save]


def test_widget_values_follow_the_widget_order_of_object_info(object_info):
    prompt = ui_to_api(_workflow([_ksampler(), _node(5, "EmptyLatentImage", [512, 768, 2],
                                                     outputs=[("LATENT", "LATENT")])]), object_info)
    assert prompt["3"] == {"class_type": "KSampler", "_meta": {"title": "KSampler"},
                           "inputs": {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                      "scheduler": "normal", "denoise": 1.0}}
    assert prompt["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 2}


def test_control_after_generate_value_is_skipped(object_info):
    # V1 node with the option (KSampler), V3 node with the option (PrimitiveInt).
    assert [(s.name, s.sent) for s in widget_slots(object_info["KSampler"])][:3] == [
        ("seed", True), ("control_after_generate", False), ("steps", True)]
    prompt = ui_to_api(_workflow([_node(2, "PrimitiveInt", [5, "increment"], outputs=[("INT", "INT")])]), object_info)
    assert prompt["2"]["inputs"] == {"value": 5}


def test_widget_count_mismatch_is_refused(object_info):
    with pytest.raises(ValueError, match=r"node 5 \(EmptyLatentImage\): widgets_values has 2 entries"):
        ui_to_api(_workflow([_node(5, "EmptyLatentImage", [512, 512])]), object_info)


def test_link_into_a_converted_widget_replaces_its_value(object_info):
    seed_node = _node(2, "PrimitiveInt", [1234, "fixed"], outputs=[("INT", "INT")])
    sampler = _ksampler(inputs=[("seed", "INT", 1, True)])
    prompt = ui_to_api(_workflow([seed_node, sampler], [[1, 2, 0, 3, 0, "INT"]]), object_info)
    assert prompt["3"]["inputs"]["seed"] == ["2", 0]
    assert prompt["3"]["inputs"]["steps"] == 20


def test_reroute_resolves_to_its_source(object_info):
    reroute = _node(10, "Reroute", inputs=[("", "*", 1)], outputs=[("", "VAE")])
    nodes = [_checkpoint(), reroute, *_decode_and_save(vae_link=2, image_link=3)]
    links = [[1, 1, 2, 10, 0, "*"], [2, 10, 0, 8, 1, "VAE"], [3, 8, 0, 9, 0, "IMAGE"]]
    prompt = ui_to_api(_workflow(nodes, links), object_info)
    assert "10" not in prompt
    assert prompt["8"]["inputs"] == {"vae": ["1", 2]}
    assert prompt["9"]["inputs"] == {"filename_prefix": "out", "images": ["8", 0]}


def test_primitive_node_value_goes_into_the_widget_it_feeds(object_info):
    primitive = _node(14, "PrimitiveNode", [7, "fixed"], outputs=[("INT", "INT")])
    sampler = _ksampler(inputs=[("steps", "INT", 1, True)])
    prompt = ui_to_api(_workflow([primitive, sampler], [[1, 14, 0, 3, 0, "INT"]]), object_info)
    assert "14" not in prompt
    assert prompt["3"]["inputs"]["steps"] == 7


def test_muted_node_and_inputs_linked_to_it_are_dropped(object_info):
    invert = _node(12, "ImageInvert", inputs=[("image", "IMAGE", 2)], outputs=[("IMAGE", "IMAGE")], mode=2)
    save = _node(13, "SaveImage", ["out"], [("images", "IMAGE", 3)])
    nodes = [_checkpoint(), *_decode_and_save(vae_link=1, image_link=4), invert, save]
    links = [[1, 1, 2, 8, 1, "VAE"], [2, 8, 0, 12, 0, "IMAGE"], [3, 12, 0, 13, 0, "IMAGE"], [4, 8, 0, 9, 0, "IMAGE"]]
    prompt = ui_to_api(_workflow(nodes, links), object_info)
    assert "12" not in prompt
    assert prompt["13"]["inputs"] == {"filename_prefix": "out"}


def test_bypassed_node_passes_its_matching_input_through(object_info):
    latent = _node(5, "EmptyLatentImage", [512, 512, 1], outputs=[("LATENT", "LATENT")])
    upscale = _node(11, "LatentUpscaleBy", ["nearest-exact", 1.5], [("samples", "LATENT", 1)],
                    [("LATENT", "LATENT")], mode=4)
    # VAEEncode has no LATENT input, so bypassing it leaves the input it feeds unconnected.
    encode = _node(20, "VAEEncode", [], [("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")], mode=4)
    sampler = _ksampler(inputs=[("latent_image", "LATENT", 2)])
    other = _ksampler(node_id=4, inputs=[("latent_image", "LATENT", 3)])
    links = [[1, 5, 0, 11, 0, "LATENT"], [2, 11, 0, 3, 0, "LATENT"], [3, 20, 0, 4, 0, "LATENT"]]
    prompt = ui_to_api(_workflow([latent, upscale, encode, sampler, other], links), object_info)
    assert "11" not in prompt and "20" not in prompt
    assert prompt["3"]["inputs"]["latent_image"] == ["5", 0]
    assert "latent_image" not in prompt["4"]["inputs"]


def test_notes_are_ignored(object_info):
    nodes = [_node(1, "Note", ["remember"]), _node(2, "MarkdownNote", ["# title"]), _checkpoint(3)]
    assert list(ui_to_api(_workflow(nodes), object_info)) == ["3"]


def test_unknown_node_type_is_refused_with_its_id(object_info):
    with pytest.raises(ValueError, match=r"node 7 \(NoSuchNode\): unknown node type 'NoSuchNode'"):
        ui_to_api(_workflow([_checkpoint(), _node(7, "NoSuchNode", [])]), object_info)


def test_subgraph_is_refused(object_info):
    workflow = _workflow([_node(4, "0c3d3b0e-1111-4222-8333-444455556666", [])])
    workflow["definitions"] = {"subgraphs": [{"id": "0c3d3b0e-1111-4222-8333-444455556666"}]}
    with pytest.raises(ValueError, match="node 4 .* is a subgraph"):
        ui_to_api(workflow, object_info)


def test_dynamic_prompt_choices_comments_and_escapes():
    rng = random.Random(0)
    assert process_dynamic_prompt("a {red|red} bottle // a comment", rng) == "a red bottle "
    assert process_dynamic_prompt("x {a|{b|c}} /* gone */y", rng) in {"x a y", "x b y", "x c y"}
    assert process_dynamic_prompt(r"keep \{braces\|pipes\}", rng) == "keep {braces|pipes}"


# --- the real frontend ----------------------------------------------------------------------------------------

# Runs after a script that built a graph in the frontend: what the frontend queues, and what it saves.
READ_JS = """
const prompt = await app.graphToPrompt();
return {ui: JSON.parse(JSON.stringify(app.graph.serialize())), saved: prompt.workflow, output: prompt.output};
"""
DEFAULT_GRAPH_JS = f"""
await app.loadGraphData();
const byType = (type) => app.graph.nodes.find((node) => node.type === type);
byType("CheckpointLoaderSimple").widgets.find((w) => w.name === "ckpt_name").value = "{CHECKPOINT}";
"""
EDITED_GRAPH_JS = DEFAULT_GRAPH_JS + """
const add = (type, props = {}) => { const n = LiteGraph.createNode(type); Object.assign(n, props); app.graph.add(n);
                                    return n; };
const ckpt = byType("CheckpointLoaderSimple"), sampler = byType("KSampler"), decode = byType("VAEDecode");
const reroute = add("Reroute");
ckpt.connect(2, reroute, 0); reroute.connect(0, decode, decode.findInputSlot("vae"));
const upscale = add("LatentUpscaleBy", {mode: 4});
byType("EmptyLatentImage").connect(0, upscale, 0); upscale.connect(0, sampler, sampler.findInputSlot("latent_image"));
const invert = add("ImageInvert", {mode: 2}), save = add("SaveImage");
decode.connect(0, invert, 0); invert.connect(0, save, save.findInputSlot("images"));
const primitive = add("PrimitiveNode");
primitive.connect(0, sampler, sampler.findInputSlot("steps")); primitive.widgets[0].value = 7;
const seed = add("PrimitiveInt"); seed.widgets[0].value = 1234; seed.connect(0, sampler, sampler.findInputSlot("seed"));
add("Note").widgets[0].value = "a note";
byType("CLIPTextEncode").widgets[0].value = "a {red|red} bottle // comment";
"""
# One node of every registered type, titled so the prompt's _meta does not depend on the UI's language.
ALL_NODES_JS = """
app.graph.clear();
for (const type of Object.keys(LiteGraph.registered_node_types).filter((t) => !SKIP.includes(t))) {
  const node = LiteGraph.createNode(type); node.title = "#" + type; app.graph.add(node);
}
"""


def _graph_in_frontend(frontend: HeadlessChromium, build_js: str) -> dict:
    return frontend.evaluate(f"(async () => {{ {build_js}\n{READ_JS} }})()", await_promise=True, timeout=120)


def _assert_converts_like_frontend(graph: dict, object_info: dict) -> None:
    # Both what the graph serialises to and what the frontend saves (unlinked widget inputs removed).
    assert ui_to_api(graph["ui"], object_info) == graph["output"]
    assert ui_to_api(graph["saved"], object_info) == graph["output"]


def test_default_workflow_converts_like_the_frontend(frontend, object_info):
    graph = _graph_in_frontend(frontend, DEFAULT_GRAPH_JS)
    assert graph["output"]["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    _assert_converts_like_frontend(graph, object_info)


def test_reroute_muted_bypassed_and_primitive_graph_converts_like_the_frontend(frontend, object_info):
    graph = _graph_in_frontend(frontend, EDITED_GRAPH_JS)
    output = graph["output"]
    sampler = next(entry["inputs"] for entry in output.values() if entry["class_type"] == "KSampler")
    assert sampler["steps"] == 7 and sampler["latent_image"] == ["5", 0]
    assert [entry["class_type"] for entry in output.values()].count("SaveImage") == 2
    _assert_converts_like_frontend(graph, object_info)


def test_every_node_type_converts_like_the_frontend(frontend, object_info):
    skip = json.dumps(sorted(UNCOMPARABLE_NODES))
    graph = _graph_in_frontend(frontend, f"const SKIP = {skip};\n{ALL_NODES_JS}")
    mismatches = {}
    for node in graph["ui"]["nodes"]:
        single = dict(graph["ui"], nodes=[node], links=[])
        if node["type"] in REFUSED_NODES:
            with pytest.raises(ValueError, match="a frontend extension adds widgets"):
                ui_to_api(single, object_info)
            continue
        expected = {key: entry for key, entry in graph["output"].items() if key == str(node["id"])}
        converted = ui_to_api(single, object_info)
        if converted != expected:
            mismatches[node["type"]] = {"ui_to_api": converted, "frontend": expected}
    assert not mismatches, json.dumps(mismatches, indent=1)[:6000]
    assert len(graph["ui"]["nodes"]) > 100
