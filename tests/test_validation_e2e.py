"""Validation while training through the real server: the Training Validation node on both trainers
writes its rounds to output/ and shows the last round and the scored curve on the trainer; a
validation prompt InST cannot use is refused by name."""

from images_for_tests import score_pixels
from PIL import Image
from prompts import CLIP_VISION, inst_training, validation_node
from styleforge_prompts import train_single

from devhost.example_inputs import painting
from devhost.paths import BASE_DIR

OUTPUT = BASE_DIR / "output"


def _clear(prefix: str) -> None:
    for path in OUTPUT.glob(f"{prefix}_*"):
        path.unlink()


def test_inst_validation_rounds_are_saved_scored_and_shown_on_the_trainer(comfy_server, painting_file):
    """The rounds' files, the last round and the curve on the trainer, and the run summary (best step
    included) in the history, where a tab switch or a history load finds it again."""
    _clear("tests_validation/inst")
    prompt = inst_training(painting_file, steps=1, filename="", validation=["50", 0])
    prompt["50"] = validation_node("a house in the style of *\n*", "tests_validation/inst", None)
    with comfy_server.progress_texts() as texts:
        result = comfy_server.run(prompt)
    assert result.ok, result.error
    names = sorted(p.name for p in OUTPUT.glob("tests_validation/inst_*"))
    run = names[0][: len("inst_00001")]
    # from its first moment the trainer says what it prepares; its summary is kept in the history
    assert [t for node, t in texts if node == "4"][0] == "preparing: 1 painting(s) through CLIP vision and the VAE"
    [summary] = comfy_server.get(f"/history/{result.prompt_id}")[result.prompt_id]["outputs"]["4"]["text"]
    assert summary.startswith("eval loss ") and f"validation images: output/tests_validation/{run}_step*.png" in summary
    assert " best " in summary, summary
    assert names == sorted([f"{run}_curve.png"] + [f"{run}_step{s:06}_{k}.png" for s in (0, 1) for k in (1, 2)])
    shown = result.outputs["4"]["images"]
    assert shown[0]["type"] == "temp"  # the loss curve
    assert [(i["filename"], i["subfolder"], i["type"]) for i in shown[1:]] == [
        (f"{run}_step000001_{k}.png", "tests_validation", "output") for k in (1, 2)]
    with Image.open(OUTPUT / "tests_validation" / f"{run}_curve.png") as curve:
        assert curve.size == (640, 360)


def test_styleforge_validation_with_clip_vision_writes_every_round(comfy_server, pkg):  # pkg: score_pixels
    _clear("tests_validation/sf")
    one_painting = BASE_DIR / "input" / "tests_validation_one_painting"  # one StyleRef image to score against
    one_painting.mkdir(parents=True, exist_ok=True)
    painting(4, (64, 64)).save(one_painting / "painting.png")
    prompt = train_single("styleforge_test/validated", "styleforge_test/validated", steps=2, validation=["50", 0])
    prompt["2"]["inputs"]["folder"] = one_painting.name
    prompt["51"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": CLIP_VISION}}
    prompt["50"] = validation_node("", "tests_validation/sf", ["51", 0])
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    steps = sorted(p.name.split("_step")[1][:6] for p in OUTPUT.glob("tests_validation/sf_*_step*"))
    assert steps == ["000000", "000002"]
    [curve] = OUTPUT.glob("tests_validation/sf_*_curve.png")
    with Image.open(curve) as image:
        assert score_pixels(image) > 50, "the CLIP-I scores of the connected CLIP vision are drawn"


def test_inst_validation_prompt_without_the_placeholder_is_refused_by_name(comfy_server, painting_file):
    _clear("tests_validation/refused")
    prompt = inst_training(painting_file, steps=2, filename="", validation=["50", 0])
    prompt["50"] = validation_node("a house by the sea", "tests_validation/refused", None)
    result = comfy_server.run(prompt)
    assert not result.ok
    assert "Input 'prompts': validation prompt 'a house by the sea' has no '*'" in result.error["exception_message"]
    assert list(OUTPUT.glob("tests_validation/refused_*")) == []
    assert comfy_server.get("/system_stats")["system"]
