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


def test_a_misspelled_column_or_an_empty_manifest_stops_before_ray_naming_it(tiny_models, tmp_path):
    """A column the batch does not know would leave its setting at the default, so it is refused with
    the nearest known column; read as spreadsheets save CSV (UTF-8 with a BOM, whose first column is
    still 'kind'). A manifest without rows is refused too. Both exit 2, nothing written."""
    def run(manifest):
        return batch_command("--manifest", str(manifest), "--out", str(tmp_path / "out"),
                             "--checkpoint", tiny_models["tiny_sd15_taesd"].name)

    misspelled = tmp_path / "misspelled.csv"
    misspelled.write_text("kind,name,painting,step\ninst,x,batch_command_painting.png,5\n", encoding="utf-8-sig")
    refused = run(misspelled)
    assert refused.returncode == 2
    assert "batch: --manifest: unknown column(s) 'step' (did you mean 'steps'?)." in refused.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("kind,name,painting\n")
    refused = run(empty)
    assert refused.returncode == 2 and f"batch: --manifest: {empty} has no rows." in refused.stderr
    assert not (tmp_path / "out").exists()
