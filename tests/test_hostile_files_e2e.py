"""Files a user picks are untrusted: style files, LoRAs and official checkpoints made hostile here, each
picked through the real server. Every one is refused with an error naming the input that picked it,
before anything is built from it: nothing is written, the server keeps serving, and a file asking for
gigabytes does not get them. (Each lie's exact diagnosis is checked in-process in
test_inst_style_file.py, test_styleforge_inputs.py and test_inst_official_import.py.)"""

import json
import re

import pytest
from prompts import inst_training
from safetensors.torch import load_file, save_file
from saved_files import file_metadata
from styleforge_prompts import image_set, trainer

from devhost.example_inputs import write_examples
from devhost.paths import BASE_DIR

STYLES = BASE_DIR / "models" / "inst_styles"
LORAS = BASE_DIR / "models" / "loras"
HOSTILE = "hostile"  # the subfolder the files are written to
# A spec that states a 8192-wide attention head over 2 KB of tensors would make a loader that trusts it
# allocate gigabytes; the server may grow by no more than this while refusing it.
ALLOCATION_BOUND_MB = 100


def _resident_kb(pid: int, field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", open(f"/proc/{pid}/status").read()).group(1))


def _peak_reset(pid: int) -> int:
    """Reset the process's peak resident memory (VmHWM) to its current size, which is returned (kB)."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
    return _resident_kb(pid, "VmRSS")


def _peak_growth_mb(pid: int, since_kb: int) -> float:
    return (_resident_kb(pid, "VmHWM") - since_kb) / 1024


def _written_since(before: set) -> set:
    now = {p for folder in (STYLES, LORAS, BASE_DIR / "models" / "embeddings", BASE_DIR / "output")
           for p in folder.rglob("*") if p.is_file()}
    return now - before


def _all_files() -> set:
    return _written_since(set())


def _refused(server, prompt: dict, input_name: str) -> str:
    before = _all_files()
    result = server.run(prompt)
    assert not result.ok, "the hostile file should have been refused"
    message = result.error.get("exception_message", "")
    assert f"Input '{input_name}'" in message, message
    assert _written_since(before) == set()
    assert server.get("/system_stats")  # the server keeps serving
    return message


@pytest.fixture(scope="module")
def style_file(pkg):
    """(tensors, metadata) of a real style file as Save InST Style writes it."""
    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import save_style

    path = save_style(InSTStyle(StyleSpec(family="SD15", token_widths={"l": 768}, image_dim=768,
                                          training={"steps": 1})), STYLES / HOSTILE / "honest.safetensors")
    return load_file(str(path)), file_metadata(path)


def _hostile_style(style_file, name: str, spec=None, tensors=None) -> str:
    honest_tensors, metadata = style_file
    spec = json.loads(metadata["spec"]) if spec is None else spec
    save_file(tensors or honest_tensors, str(STYLES / HOSTILE / f"{name}.safetensors"),
              metadata={**metadata, "spec": spec if isinstance(spec, str) else json.dumps(spec)})
    return f"{HOSTILE}/{name}.safetensors"


def _lies(style_file) -> dict:
    tensors, metadata = style_file
    spec = json.loads(metadata["spec"])
    first = next(n for n in sorted(tensors) if tensors[n].dim() == 2 and len(set(tensors[n].shape)) == 2)
    return {
        "not_json": dict(spec="{not json"),
        "extra_key": dict(spec={**spec, "colour": "red"}),
        "wrong_type": dict(spec={**spec, "image_dim": "768"}),
        "huge_head": dict(spec={**spec, "dim_head": 8192}),
        "missing_tensor": dict(tensors={n: t for n, t in tensors.items() if n != first}),
        "reversed_shape": dict(tensors={**tensors, first: tensors[first].reshape(tensors[first].shape[::-1])}),
    }


def _load_style_prompt(style_name: str) -> dict:
    return {"1": {"class_type": "InST_LoadStyle", "inputs": {"style_name": style_name}},
            "2": {"class_type": "InST_SaveStyle", "inputs": {"style": ["1", 0], "filename": f"{HOSTILE}/resaved"}}}


@pytest.mark.parametrize("lie", ["not_json", "extra_key", "wrong_type", "huge_head", "missing_tensor",
                                 "reversed_shape"])
def test_a_lying_style_file_is_refused_on_style_name_without_allocating_what_it_asks(comfy_server, style_file, lie):
    name = _hostile_style(style_file, lie, **_lies(style_file)[lie])
    before = _peak_reset(comfy_server.proc.pid)
    _refused(comfy_server, _load_style_prompt(name), "style_name")
    assert _peak_growth_mb(comfy_server.proc.pid, before) < ALLOCATION_BOUND_MB


def test_a_lying_style_file_is_refused_on_continue_from(comfy_server, style_file, painting_file):
    name = _hostile_style(style_file, "continued_lie", **_lies(style_file)["wrong_type"])
    prompt = inst_training(painting_file, steps=2, filename=f"{HOSTILE}/never", continue_from=name)
    _refused(comfy_server, prompt, "continue_from")


def test_a_text_file_named_pt_is_refused_on_official_file(comfy_server):
    (STYLES / HOSTILE).mkdir(parents=True, exist_ok=True)
    (STYLES / HOSTILE / "notes.pt").write_text("these are my notes, not a checkpoint\n")
    prompt = {"1": {"class_type": "InST_ImportOfficialStyle", "inputs": {"official_file": f"{HOSTILE}/notes.pt"}},
              "2": {"class_type": "InST_SaveStyle", "inputs": {"style": ["1", 0], "filename": f"{HOSTILE}/imported"}}}
    assert "is not an official InST embeddings.pt" in _refused(comfy_server, prompt, "official_file")


@pytest.fixture(scope="module")
def honest_lora(comfy_server) -> dict:
    """(tensors, metadata) of a Single-StyleForge LoRA trained for one step through the server."""
    write_examples(BASE_DIR / "input")
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15_taesd.safetensors"}},
              "2": image_set("styleref"), "3": image_set("aux"),
              **trainer({"style_images": "2", "aux": "3"}, steps=1),
              "5": {"class_type": "StyleForge_SaveLoRA", "inputs": {"lora": ["4", 2], "filename": f"{HOSTILE}/honest",
                                                                   "precision": "fp32"}}}
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    path = LORAS / HOSTILE / "honest.safetensors"
    return load_file(str(path)), file_metadata(path)


def _resume_prompt(name: str, multi: bool = False) -> dict:
    sets = {"people": "2", "backgrounds": "6", "aux": "3"} if multi else {"style_images": "2", "aux": "3"}
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15_taesd.safetensors"}},
              "2": image_set("people" if multi else "styleref"), "3": image_set("aux"), "6": image_set("backgrounds"),
              **trainer(sets, multi=multi, steps=3, resume_from=name)}
    trainer_id = "5" if multi else "4"
    prompt["9"] = {"class_type": "StyleForge_SaveLoRA", "inputs": {"lora": [trainer_id, 2],
                                                                  "filename": f"{HOSTILE}/never", "precision": "fp16"}}
    return prompt


@pytest.mark.parametrize("lie", ["transposed_down", "steps_not_a_number", "no_family"])
def test_a_lying_lora_is_refused_on_resume_from(comfy_server, honest_lora, lie):
    tensors, metadata = honest_lora
    down = next(k for k in sorted(tensors) if k.endswith(".lora_down.weight"))
    lies = {"transposed_down": ({**tensors, down: tensors[down].T.contiguous()}, metadata),
            "steps_not_a_number": (tensors, {**metadata, "steps": "abc"}),
            "no_family": (tensors, {k: v for k, v in metadata.items() if k != "base_model_family"})}
    lying_tensors, lying_metadata = lies[lie]
    save_file(lying_tensors, str(LORAS / HOSTILE / f"{lie}.safetensors"), metadata=lying_metadata)
    _refused(comfy_server, _resume_prompt(f"{HOSTILE}/{lie}.safetensors"), "resume_from")


def test_multi_refuses_to_resume_a_single_lora_by_name(comfy_server, honest_lora):
    message = _refused(comfy_server, _resume_prompt(f"{HOSTILE}/honest.safetensors", multi=True), "resume_from")
    assert "is a Single-StyleForge LoRA, but this is the Multi-StyleForge trainer" in message
