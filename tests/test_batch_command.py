"""The batch command as a user runs it (a subprocess): wrong flags or a missing manifest stop it before
Ray starts, with a message naming the flag. (Its training run is test_batch.py's shared manifest.)"""

from test_batch import INST_ROW, batch_command, write_manifest


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
