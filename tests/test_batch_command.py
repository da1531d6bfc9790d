"""The batch command as a user runs it: a subprocess that starts its own Ray, trains a manifest on the
tiny fixtures (models named as in ComfyUI's model folders) and reports; wrong flags or a missing
manifest stop it before Ray starts, with a message naming the flag."""

import json
import subprocess
import sys

from test_batch import INST_ROW, write_manifest

from devhost.example_inputs import painting
from devhost.paths import BASE_DIR, COMFY_DIR, REPO_ROOT

COMMAND_TIMEOUT_S = 600


def batch_command(*flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "batch" / "cli.py"), "--comfyui", str(COMFY_DIR), "--base-dir",
               str(BASE_DIR), "--cpu", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def test_the_command_trains_a_manifest_writes_the_report_and_fails_only_the_bad_row(tiny_models, tmp_path):
    painting(5).save(BASE_DIR / "input" / "batch_command_painting.png")
    write_manifest(tmp_path / "manifest.csv", [
        dict(INST_ROW, name="from_the_command", painting="batch_command_painting.png", seed="5"),
        dict(INST_ROW, name="not_there", painting="no_such_painting.png")])
    result = batch_command("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                           "--checkpoint", tiny_models["tiny_sd15_taesd"].name,
                           "--clip-vision", tiny_models["tiny_clip_vision_vitl"].name, "--workers", "1")
    assert result.returncode == 1, result.stderr  # a row failed
    assert f"report: {tmp_path / 'out' / 'report.json'}" in result.stdout
    assert "batch: 2/2 jobs ended (0 skipped, 1 failed)" in result.stderr
    done, failed = json.loads((tmp_path / "out" / "report.json").read_text())
    assert done["status"] == "done" and done["files"] == ["inst_styles/from_the_command.safetensors",
                                                          "embeddings/from_the_command.safetensors"]
    assert all((tmp_path / "out" / f).is_file() for f in done["files"])
    assert failed["status"] == "failed" and "row 2, field 'painting'" in failed["error"]


def test_an_unknown_model_or_missing_manifest_stops_before_ray_naming_the_flag(tiny_models, tmp_path):
    write_manifest(tmp_path / "manifest.csv", [dict(INST_ROW, name="x", painting="batch_command_painting.png")])
    unknown = batch_command("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path),
                            "--checkpoint", "no_such_model.safetensors")
    assert unknown.returncode == 2
    assert ("batch: Input '--checkpoint': 'no_such_model.safetensors' is not in models/checkpoints. Give a file "
            "name listed there, or a path to the file.") in unknown.stderr
    missing = batch_command("--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path),
                            "--checkpoint", tiny_models["tiny_sd15_taesd"].name)
    assert missing.returncode == 2
    assert f"batch: --manifest: cannot read {tmp_path / 'none.csv'} (No such file or directory)." in missing.stderr
    assert not (tmp_path / "report.json").exists()
