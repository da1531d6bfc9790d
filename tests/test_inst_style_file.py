"""InST style files: what the trainer writes loads back, including files written before the spec
renamed its attention-head count."""

import json

import torch
from safetensors.torch import load_file, save_file


def test_a_version_1_style_file_loads_with_its_attention_heads(pkg, tmp_path):
    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import load_style, save_style

    style = InSTStyle(StyleSpec(family="SD15", token_widths={"l": 768}, image_dim=768, attention_heads=4, dim_head=32))
    current = save_style(style, tmp_path / "current.safetensors")
    spec = {**json.loads(style.spec.to_metadata()["spec"])}
    spec["heads"] = spec.pop("attention_heads")  # how format version 1 wrote it
    old = tmp_path / "version1.safetensors"
    save_file(load_file(current), old, metadata={"format": "inst-style", "format_version": "1",
                                                  "spec": json.dumps(spec)})
    for path in (current, old):
        loaded = load_style(path)
        assert loaded.spec == style.spec
        for key, value in style.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
