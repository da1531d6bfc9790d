"""InST style files: what the trainer writes loads back, including files written before the spec
renamed its attention-head count."""

import json
import re

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


def _saved_style(tmp_path):
    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import save_style

    style = InSTStyle(StyleSpec(family="SD15", token_widths={"l": 768}, image_dim=768, attention_heads=4, dim_head=32))
    path = save_style(style, tmp_path / "good.safetensors")
    return load_file(path), json.loads(style.spec.to_metadata()["spec"])


def _rewritten(tmp_path, tensors: dict, spec) -> object:
    path = tmp_path / "lying.safetensors"
    save_file(tensors, path, metadata={"format": "inst-style", "format_version": "2",
                                       "spec": spec if isinstance(spec, str) else json.dumps(spec)})
    return path


def test_style_files_that_lie_are_refused_on_the_input_that_picked_them(pkg, tmp_path):
    """A spec that is not JSON, has an unknown or missing field, a wrong type, sizes no real style has,
    or tensors shaped otherwise than it says: each is an InputError on the input that picked the file
    (style_name, or the trainer's continue_from), before any module is built from the file."""
    import pytest
    from inst_styleforge.inst_core.style_file import load_style
    from inst_styleforge.training_kit.errors import InputError

    tensors, spec = _saved_style(tmp_path)
    first = next(name for name in sorted(tensors) if tensors[name].dim() == 2 and len(set(tensors[name].shape)) == 2)
    cases = {
        "not valid JSON": "{not json",
        "unknown field(s) ['colour']": {**spec, "colour": "red"},
        "missing field(s) ['image_dim']": {k: v for k, v in spec.items() if k != "image_dim"},
        "['image_dim'] have the wrong type": {**spec, "image_dim": "768"},
        "['token_widths'] have the wrong type": {**spec, "token_widths": {"l": 10**6}},
        "does not match its own spec": {**spec, "dim_head": 8192},  # 2 KB of tensors asking for GBs
    }
    for problem, lie in cases.items():
        for input_name in ("style_name", "continue_from"):
            with pytest.raises(InputError, match=rf"^Input '{input_name}': 'lying.safetensors' .*{re.escape(problem)}"):
                load_style(_rewritten(tmp_path, tensors, lie), input_name)
    reversed_shape = {**tensors, first: tensors[first].reshape(tensors[first].shape[::-1])}  # same bytes
    with pytest.raises(InputError, match=rf"does not match its own spec .*other shapes \['{re.escape(first)}'\]"):
        load_style(_rewritten(tmp_path, reversed_shape, spec))


def test_a_saved_file_gets_the_mode_new_files_get_so_other_users_can_read_it(pkg, tmp_path):
    """As ComfyUI's own saves: 0644 under the usual umask 022 (an atomic write's temporary file must not
    leave it owner-only)."""
    import os

    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import save_style

    previous = os.umask(0o022)
    try:
        path = save_style(InSTStyle(StyleSpec(family="SD15", token_widths={"l": 768}, image_dim=768)),
                          tmp_path / "shared.safetensors")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
