"""Convert a UI-format workflow (what the ComfyUI frontend saves) into the API prompt the server runs.

The server only executes the API format, `{node_id: {"class_type", "inputs"}}`; the UI format only
stores widget values by position and links by slot. This is a port of the frontend's
`app.graphToPrompt()` (ComfyUI_frontend 1.32, `executionUtil.ts` and `ExecutableNodeDTO`) so example
workflows saved from the UI can be queued from Python, driven by the server's `GET /object_info`:

- widget values are matched by position to the widgets the frontend builds from the node definition,
  including the frontend-only widgets it inserts (the seed's `control_after_generate`, upload buttons);
- links resolve through Reroute nodes and bypassed nodes; a PrimitiveNode's value goes into the widget
  it feeds; a linked widget input replaces the widget value;
- muted nodes are left out, and so are inputs linked to them; Notes and other virtual nodes never run.

Anything that cannot be converted faithfully raises ValueError naming the node: unknown node types,
subgraphs and group nodes (unpack them in the UI before saving), and a node whose number of widget
values differs from what /object_info predicts (another version of the node, or a frontend extension
that adds its own widgets, like the 3D nodes').
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

MUTED = 2  # LGraphEventMode.NEVER
BYPASSED = 4  # LGraphEventMode.BYPASS
# Frontend-only nodes: they shape the graph but are never sent to the server.
VIRTUAL_TYPES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
# Input types the frontend draws as widgets (its core `ComfyWidgets`); a list type is a COMBO.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "COLOR",
                          "IMAGECOMPARE", "CHART", "GALLERIA", "TEXTAREA"})
# The frontend gives INT inputs with these names a control widget unless `control_after_generate` says otherwise.
SEED_NAMES = ("seed", "noise_seed")
MEDIA_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
PRIMITIVE_REPLACE_PROPERTY = "Run widget replace on values"

Origin = tuple[int, int]  # (node id, output slot) a link input resolves to


@dataclass(frozen=True)
class WidgetSlot:
    """One entry of a node's `widgets_values`: the input it fills, and whether the frontend sends it (its
    control and upload widgets only act in the UI)."""

    name: str
    sent: bool = True
    dynamic_prompt: bool = False


def ui_to_api(workflow: dict, object_info: dict, rng: random.Random | None = None) -> dict:
    """The API prompt `app.graphToPrompt()` would queue for `workflow` (UI format, version 0.4).

    `object_info` is the server's `GET /object_info`. `rng` picks the `{a|b}` choices of dynamic-prompt
    text widgets, which the frontend picks at random on every queue.
    """
    graph = _Graph(workflow)
    graph.check_node_types(object_info)
    overrides = graph.primitive_values()
    rng = rng or random.Random()
    prompt = {}
    for node in graph.nodes.values():
        if node["type"] in VIRTUAL_TYPES or node.get("mode") in (MUTED, BYPASSED):
            continue
        node_def = object_info[node["type"]]
        inputs = _widget_inputs(node, node_def, overrides.get(node["id"], {}), rng)
        inputs.update(graph.link_inputs(node))
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": _title(node, node_def)}}
    _drop_links_to_missing_nodes(prompt)
    return prompt


def widget_slots(node_def: dict) -> list[WidgetSlot]:
    """The widgets the frontend builds for a node definition, in `widgets_values` order.

    Required inputs come first, then the upload button the frontend appends to the required inputs of a
    media loader, then optional inputs; each widget may be followed by the frontend's companion widgets.
    """
    inputs = node_def.get("input", {})
    required = inputs.get("required") or {}
    slots = [slot for name, spec in required.items() for slot in _slots_for_input(name, spec)]
    if any(_is_media_upload(spec) for spec in required.values()):
        slots.append(WidgetSlot("upload", sent=False))
    optional = inputs.get("optional") or {}
    slots += [slot for name, spec in optional.items() for slot in _slots_for_input(name, spec)]
    return slots


def process_dynamic_prompt(text: str, rng: random.Random) -> str:
    """Strip comments and resolve `{a|b|c}` choices, as the frontend does for `dynamicPrompts` text widgets."""
    text = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    out, pos = [], 0
    while pos < len(text):
        char, pos = text[pos], pos + 1
        if char == "\\":
            out.append("\\" + text[pos:pos + 1])
            pos += 1
        elif char == "{":
            options, pos = _choice_block(text, pos)
            out.append(process_dynamic_prompt(rng.choice(options), rng))
        else:
            out.append(char)
    return re.sub(r"\\([{}|])", r"\1", "".join(out))


def _choice_block(text: str, pos: int) -> tuple[list[str], int]:
    """The `|`-separated options of the `{...}` block starting at `pos`, nested blocks kept whole."""
    options, current, depth = [], "", 0
    while pos < len(text):
        char, pos = text[pos], pos + 1
        if char == "\\":
            current += "\\" + text[pos:pos + 1]
            pos += 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if not depth:
                break
            depth -= 1
        elif char == "|" and not depth:
            options.append(current)
            current = ""
            continue
        current += char
    options.append(current)
    return options, pos


def _spec_type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def _spec_options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_widget(spec: list) -> bool:
    return _spec_type(spec) in WIDGET_TYPES and not _spec_options(spec).get("forceInput")


def _is_media_upload(spec: list) -> bool:
    options = _spec_options(spec)
    return _spec_type(spec) == "COMBO" and any(options.get(key) is True for key in MEDIA_UPLOAD_OPTIONS)


def _slots_for_input(name: str, spec: list) -> list[WidgetSlot]:
    """The widget for one input (none for a socket) followed by the companions the frontend adds to it."""
    if not _is_widget(spec):
        return []
    kind, options = _spec_type(spec), _spec_options(spec)
    slots = [WidgetSlot(name, dynamic_prompt=kind == "STRING" and options.get("dynamicPrompts") is True)]
    if kind == "INT":
        control = options.get("control_after_generate")
        if control is None:
            control = name in SEED_NAMES
        if control:
            slots.append(WidgetSlot("control_after_generate", sent=False))
    if kind == "COMBO" and "remote" in options:
        slots.append(WidgetSlot("Auto-refresh after generation", sent=False))
        if options["remote"].get("refresh_button"):
            slots.append(WidgetSlot("refresh"))  # a button, but the frontend sends its value
    if kind == "COMBO" and options.get("control_after_generate"):
        slots += [WidgetSlot("control_after_generate", sent=False), WidgetSlot("control_filter_list", sent=False)]
    return slots


def _widget_inputs(node: dict, node_def: dict, overrides: dict, rng: random.Random) -> dict:
    """Inputs from the node's widget values, matched by position to the widgets the frontend built."""
    slots = widget_slots(node_def)
    values = node.get("widgets_values") or []
    label = _label(node)
    if not isinstance(values, list):
        raise ValueError(f"{label}: widgets_values is a {type(values).__name__}, expected a list")
    if len(values) != len(slots):
        raise ValueError(f"{label}: widgets_values has {len(values)} entries but /object_info gives "
                         f"{len(slots)} widgets {[s.name for s in slots]}; the workflow was saved with another "
                         f"version of this node, or a frontend extension adds widgets to it")
    inputs = {}
    for slot, value in zip(slots, values, strict=True):
        value = overrides.get(slot.name, value)
        # An undefined widget value (a combo with no options) is saved as null and left out of the prompt.
        if not slot.sent or value is None:
            continue
        if slot.dynamic_prompt and isinstance(value, str):
            value = process_dynamic_prompt(value, rng)
        # A list would read as a link [node_id, slot]; the server unwraps this box.
        inputs[slot.name] = {"__value__": value} if isinstance(value, list) else value
    return inputs


def _drop_links_to_missing_nodes(prompt: dict) -> None:
    """Inputs linked to a node that is not sent (muted) are dropped, as the frontend does."""
    for entry in prompt.values():
        inputs = entry["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and len(v) == 2 and v[0] not in prompt]:
            del inputs[name]


def _title(node: dict, node_def: dict) -> str:
    """The title the frontend puts in `_meta`: a workflow saves a node's title only when it differs from the
    default, the display name. For a few nodes the frontend shows its own translation of that name instead
    (e.g. "Preview Any" for display name "Preview as Text"), which /object_info cannot tell."""
    return node.get("title") or node_def.get("display_name") or node["type"]


def _label(node: dict) -> str:
    return f"node {node.get('id')} ({node.get('type')})"


def _types_match(a, b) -> bool:
    """LiteGraph.isValidConnection: `*` and empty types match anything; `A,B` matches either type."""
    a = None if a in ("", "*") else a
    b = None if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(_types_match(x, y) for x in a.split(",") for y in b.split(","))


class _Graph:
    """Nodes and links of one UI workflow, with the frontend's rules for following a link to its origin."""

    def __init__(self, workflow: dict):
        links = workflow.get("links") or []
        if any(not isinstance(link, list) for link in links):
            raise ValueError(f"links must be lists [id, origin_id, origin_slot, target_id, target_slot, type] "
                             f"(workflow format 0.4); got version {workflow.get('version')!r}")
        self.nodes = {node["id"]: node for node in workflow.get("nodes") or []}
        self.links = {link[0]: link for link in links}
        subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
        self.subgraph_ids = {subgraph.get("id") for subgraph in subgraphs}

    def check_node_types(self, object_info: dict) -> None:
        """Refuse what cannot be converted before converting anything: every node that is not muted must be
        a virtual node, a bypassed node, or a type the server knows."""
        for node in self.nodes.values():
            kind = node.get("type")
            if node.get("mode") == MUTED or kind in VIRTUAL_TYPES:
                continue
            if kind in self.subgraph_ids:
                raise ValueError(f"{_label(node)} is a subgraph; subgraphs are not supported, unpack it in the UI")
            if str(kind).startswith(("workflow>", "workflow/")):
                raise ValueError(f"{_label(node)} is a group node; group nodes are not supported, convert it to "
                                 f"nodes in the UI")
            if node.get("mode") != BYPASSED and kind not in object_info:
                raise ValueError(f"{_label(node)}: unknown node type {kind!r}, not in /object_info (is the node "
                                 f"pack that provides it installed and loaded?)")

    def primitive_values(self) -> dict[int, dict]:
        """{target node id: {widget name: value}} for every widget a PrimitiveNode feeds directly."""
        overrides: dict[int, dict] = {}
        for node in self.nodes.values():
            if node["type"] != "PrimitiveNode" or not node.get("widgets_values"):
                continue
            if (node.get("properties") or {}).get(PRIMITIVE_REPLACE_PROPERTY):
                raise ValueError(f"{_label(node)}: '{PRIMITIVE_REPLACE_PROPERTY}' is not supported")
            for link in self._links_from(node["id"], 0):
                target_input = self._input(self._node(link[3], link), link[4])
                if target_input.get("widget"):
                    overrides.setdefault(link[3], {})[target_input["widget"]["name"]] = node["widgets_values"][0]
        return overrides

    def link_inputs(self, node: dict) -> dict:
        """{input name: [origin id, origin slot]} for every input whose link resolves to a node that runs."""
        inputs = {}
        for index, slot in enumerate(node.get("inputs") or []):
            origin = self.resolve_input(node, index, None, set())
            if origin is not None:
                inputs[slot["name"]] = [str(origin[0]), origin[1]]
        return inputs

    def resolve_input(self, node: dict, index: int, slot_type, visited: set) -> Origin | None:
        """Origin of the link into input `index`; `slot_type` is the type wanted at the end of the chain."""
        self._visit(visited, node, "input", index)
        slot = self._input(node, index)
        if slot.get("link") is None:
            return None
        link = self.links.get(slot["link"])
        if link is None:
            raise ValueError(f"{_label(node)}: input {slot.get('name')!r} uses link {slot['link']}, which is not "
                             f"in the workflow's links")
        origin = self._node(link[1], link)
        return self.resolve_output(origin, link[2], slot_type if slot_type is not None else slot.get("type"),
                                   visited)

    def resolve_output(self, node: dict, index: int, slot_type, visited: set) -> Origin | None:
        """The node output a link from output `index` of `node` really comes from: a bypassed node passes
        its matching input through, a virtual node its same-index input; None when nothing feeds it."""
        self._visit(visited, node, "output", index)
        if node.get("mode") == BYPASSED:
            through = self._bypass_input(node, index, slot_type)
            return None if through == -1 else self.resolve_input(node, through, None, visited)
        if node["type"] in VIRTUAL_TYPES:
            has_input = index < len(node.get("inputs") or [])
            return self.resolve_input(node, index, slot_type, visited) if has_input else None
        return node["id"], int(index)

    def _bypass_input(self, node: dict, index: int, slot_type) -> int:
        """Index of the input a bypassed node passes to its output `index`, or -1: the input at the same
        index if its type fits, else the first input of exactly `slot_type`, else the first that fits."""
        inputs = node.get("inputs") or []
        if slot_type in ("*", ""):
            return index if len(inputs) > index else 0
        outputs = node.get("outputs") or []
        if index >= len(outputs):
            raise ValueError(f"{_label(node)} has no output {index}")
        output_type = outputs[index].get("type")

        def fits(slot: dict) -> bool:
            return _types_match(slot.get("type"), output_type) and _types_match(slot.get("type"), slot_type)

        if index < len(inputs) and fits(inputs[index]):
            return index
        exact = [i for i, slot in enumerate(inputs) if slot.get("type") == slot_type]
        matching = exact or [i for i, slot in enumerate(inputs) if fits(slot)]
        return matching[0] if matching else -1

    def _links_from(self, node_id: int, slot: int) -> list[list]:
        return [link for link in self.links.values() if link[1] == node_id and link[2] == slot]

    def _node(self, node_id: int, link: list) -> dict:
        if node_id not in self.nodes:
            raise ValueError(f"link {link[0]} refers to node {node_id}, which is not in the workflow")
        return self.nodes[node_id]

    @staticmethod
    def _input(node: dict, index: int) -> dict:
        inputs = node.get("inputs") or []
        if index >= len(inputs):
            raise ValueError(f"{_label(node)} has no input {index}")
        return inputs[index]

    @staticmethod
    def _visit(visited: set, node: dict, direction: str, index: int) -> None:
        key = (node["id"], direction, index)
        if key in visited:
            raise ValueError(f"{_label(node)}: links loop back through {direction} {index}")
        visited.add(key)
