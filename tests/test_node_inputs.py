"""Every training input of the trainer and options nodes reaches the trainer's config under its own
name: each is a field of the config, or one of the inputs the node itself consumes (models, data,
file names, resume); every numeric one is bounded as the trainer checks it (the batch path relies
on that check). A renamed field or input fails here, not in a user's run."""

import dataclasses

import pytest

# Inputs a node consumes itself rather than passing to the config.
NODE_ONLY = {"model", "clip", "vae", "clip_vision", "painting", "filename", "options", "validation",
             "style_images", "aux", "people", "backgrounds", "checkpoint_name", "resume_from", "continue_from"}


@pytest.fixture(scope="module")
def nodes(pkg):
    from inst_styleforge.inst_core.training import InSTTrainingConfig
    from inst_styleforge.nodes.inst_training import InSTOptions, TrainStyle
    from inst_styleforge.nodes.styleforge_training import StyleForgeOptions, TrainMultiStyleForge, TrainStyleForge
    from inst_styleforge.styleforge_core.training import StyleForgeConfig

    return {InSTTrainingConfig: (TrainStyle, InSTOptions),
            StyleForgeConfig: (TrainStyleForge, TrainMultiStyleForge, StyleForgeOptions)}


def test_every_trainer_input_is_a_config_field_or_used_by_the_node(nodes):
    for config, node_classes in nodes.items():
        fields = {f.name for f in dataclasses.fields(config)}
        for node in node_classes:
            inputs = {i.id for i in node.define_schema().inputs}
            unknown = inputs - fields - NODE_ONLY
            assert not unknown, f"{node.__name__}: {sorted(unknown)} are not fields of {config.__name__}"


def test_every_node_the_server_lists_says_what_it_is_for(object_info):
    """The node panel shows a node's description: none of ours is left empty."""
    ours = {name: info for name, info in object_info.items()
            if info.get("python_module", "").endswith("inst_styleforge")}
    assert len(ours) == 16
    assert [name for name, info in ours.items() if not info.get("description", "").strip()] == []


def test_every_numeric_training_input_is_bounded_by_the_range_its_trainer_checks(object_info):
    """A widget bound typed in a node instead of taken from the trainer's ranges would let the node and the
    batch accept different values: each numeric input the server lists has exactly the trainer's range."""
    from inst_styleforge.inst_core.training import RANGES as INST_RANGES
    from inst_styleforge.styleforge_core.training import RANGES as STYLEFORGE_RANGES

    nodes = {"InST_TrainStyle": INST_RANGES, "InST_Options": INST_RANGES, "StyleForge_Train": STYLEFORGE_RANGES,
             "StyleForge_TrainMulti": STYLEFORGE_RANGES, "StyleForge_Options": STYLEFORGE_RANGES}
    checked = 0
    for node, ranges in nodes.items():
        inputs = {**object_info[node]["input"]["required"], **object_info[node]["input"].get("optional", {})}
        for name, spec in ((n, i[1]) for n, i in inputs.items() if i[0] in ("INT", "FLOAT")):
            assert name in ranges, f"{node}.{name} has no range its trainer checks"
            assert (spec["min"], spec["max"]) == (ranges[name].low, ranges[name].high), f"{node}.{name}"
            checked += 1
    assert checked >= 25


def test_every_node_has_a_help_page_the_frontend_finds(object_info, comfy_server):
    """The frontend's node help panel reads /extensions/<pack>/docs/<node id>.md, the pack named by the
    node's python_module ('custom_nodes.<pack>'); each of ours is served there, titled as the node."""
    ours = {name: info for name, info in object_info.items()
            if info.get("python_module", "").endswith("inst_styleforge")}
    for name, info in ours.items():
        pack = info["python_module"].split(".")[1]
        page = comfy_server.get(f"/extensions/{pack}/docs/{name}.md").decode()
        assert page.startswith(f"# {info['display_name']}\n"), name
