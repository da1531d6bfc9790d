"""The batch command as a user runs it (a subprocess), where it refuses: wrong flags, a wrong model, a
manifest with bad rows and a folder another batch holds stop it before Ray starts (exit 2), every
problem named at once by flag or by row and field, nothing trained or written. Its training run is
test_batch.py's shared manifest."""

import json
import os
import select
import signal
import subprocess
import time

import pytest
from test_batch import INST_ROW, SF_ROW, batch_command, command_line, write_inputs, write_manifest

from devhost.paths import COMFY_DIR, REPO_ROOT

USAGE_ERROR = 2


def refusal(*flags: str) -> tuple[int, str]:
    """(exit status, stderr) of the command."""
    result = batch_command(*flags)
    return result.returncode, result.stderr


@pytest.fixture
def models(pkg, tiny_models) -> list[str]:
    write_inputs()
    return ["--checkpoint", tiny_models["tiny_sd15_taesd"].name,
            "--clip-vision", tiny_models["tiny_clip_vision_vitl"].name]


def test_help_lists_the_flags_with_their_defaults_the_manifest_columns_and_the_exit_codes():
    shown = batch_command("--help", comfyui=None).stdout
    assert "--workers WORKERS     trainer actors (one per GPU) (default: 1)" in shown
    assert "styleforge: steps, unet_lr, text_encoder_lr, rank, seed, resolution, aux_weight" in shown
    assert "example:\n  python ComfyUI/custom_nodes/inst_styleforge/batch/cli.py --manifest" in shown
    assert "130 interrupted" in shown and "2 a flag or the manifest is\nwrong" in shown


def test_wrong_flags_are_all_named_before_anything_loads(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    status, err = refusal("--manifest", "m.csv", "--checkpoint", "x", "--out", str(tmp_path / "a_file"),
                          "--comfyui", str(tmp_path), "--workers", "0", "--cpus-per-worker", "0",
                           "--gpus-per-worker", "1")
    assert status == USAGE_ERROR
    for expected in (f"batch: --comfyui: {tmp_path} is not a ComfyUI folder", "batch: --workers: is 0. Use 1 or more.",
                     "batch: --cpus-per-worker: is 0. Use 1 or more.",
                     "batch: --gpus-per-worker: is 1 with --cpu. Leave it at 0 to train on the CPU, or drop --cpu.",
                     f"batch: --out: {tmp_path / 'a_file'} is a file. Name a folder"):
        assert expected in err


def test_an_unknown_model_or_missing_manifest_stops_before_ray_naming_the_flag(models, tmp_path):
    write_manifest(tmp_path / "manifest.csv", [dict(INST_ROW, name="x", painting="batch_painting_0.png")])
    status, err = refusal("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                          "--checkpoint", "no_such_model.safetensors")
    assert status == USAGE_ERROR
    assert ("batch: Input '--checkpoint': 'no_such_model.safetensors' is not in models/checkpoints. Give a file "
            "name listed there, or a path to the file.") in err
    status, err = refusal("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                          models[0], models[1])
    assert status == USAGE_ERROR
    assert "batch: --clip-vision: the manifest has InST rows, which need a CLIP vision model." in err
    status, err = refusal("--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"), *models)
    assert status == USAGE_ERROR
    assert f"batch: --manifest: cannot read {tmp_path / 'none.csv'} (No such file or directory)." in err
    assert not (tmp_path / "out").exists()


# Rows each node would refuse (its widgets clamp, its trainer checks): each is named by row and field.
BAD_ROWS = {
    "row 1, field 'steps': -5 is out of range. Use a value from 1 to 100000.": dict(INST_ROW, steps="-5"),
    "row 2, field 'steps': 0 is out of range.": dict(INST_ROW, steps="0"),
    "row 3, field 'learning_rate': is nan, not a number. Use a value from 1e-07 to 1.": dict(INST_ROW,
                                                                                            learning_rate="nan"),
    "row 4, field 'learning_rate': -1 is out of range.": dict(INST_ROW, learning_rate="-1"),
    "row 5, field 'resolution': 68 is not a multiple of 8.": dict(INST_ROW, resolution="68"),
    "row 6, field 'steps': 'many' is not a int": dict(INST_ROW, steps="many"),
    "row 7, field 'name': 'my style' has a space": dict(INST_ROW, name="my style"),
    "row 8, field 'name': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is too long": dict(INST_ROW, name="x" * 300),
    "row 9, field 'painting': 'no_such_painting.png' does not exist": dict(INST_ROW, painting="no_such_painting.png"),
    "row 10, field 'resolution': -64 is out of range. Use a value from 64 to 2048 that is a multiple of 8.":
        dict(SF_ROW, resolution="-64"),
    "row 11, field 'aux_weight': 11 is out of range. Use a value from 0 to 10.": dict(SF_ROW, aux_weight="11"),
    "row 12, field 'name': 'nul\x00byte' is not a plain file name.": dict(SF_ROW, name="nul\x00byte"),
}


def test_every_bad_row_and_unknown_column_is_named_at_once_and_nothing_trains(models, tmp_path):
    """Checked as each node checks it, before Ray starts: out-of-range and non-finite settings, names
    the save nodes refuse, missing files, a set too small; and a misspelled column (it would train at
    the default) with the nearest known one. Read as spreadsheets save CSV (UTF-8 with a BOM)."""
    rows = [dict({"name": f"row_{n}", "painting": "batch_painting_0.png"} if row["kind"] == "inst" else
                 {"name": f"row_{n}"}, **row) for n, row in enumerate(BAD_ROWS.values())]
    rows[0]["step"] = "5"
    write_manifest(tmp_path / "manifest.csv", rows, encoding="utf-8-sig")
    status, err = refusal("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                          *models)
    assert status == USAGE_ERROR
    assert f"batch: --manifest: {tmp_path / 'manifest.csv'} has {len(BAD_ROWS) + 1} problem(s); nothing was trained." \
        in err
    assert "unknown column(s) 'step' (did you mean 'steps'?)" in err
    for expected in BAD_ROWS:
        assert expected in err
    assert not (tmp_path / "out").exists()


def test_an_empty_manifest_is_refused(models, tmp_path):
    (tmp_path / "empty.csv").write_text("kind,name,painting\n")
    status, err = refusal("--manifest", str(tmp_path / "empty.csv"), "--out", str(tmp_path / "out"), *models)
    assert status == USAGE_ERROR and f"batch: --manifest: {tmp_path / 'empty.csv'} has no rows." in err


def test_a_second_batch_into_the_same_folder_is_refused_while_the_first_runs(models, tmp_path):
    from inst_styleforge.batch import pool

    write_manifest(tmp_path / "manifest.csv", [dict(INST_ROW, name="x", painting="batch_painting_0.png")])
    first = pool.lock_output(tmp_path / "out")
    try:
        status, err = refusal("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                              *models)
    finally:
        first.close()
    assert status == USAGE_ERROR
    assert f"batch: --out: another batch is writing to {tmp_path / 'out'}. Wait for it to end" in err
    pool.lock_output(tmp_path / "out").close()  # free again once the first has ended


def test_linked_into_custom_nodes_the_command_finds_its_comfyui_without_a_flag(tiny_models, tmp_path):
    """A package linked into ComfyUI/custom_nodes (as the dev host and many users install it) runs as
    `python ComfyUI/custom_nodes/<it>/batch/cli.py` and finds that ComfyUI, not the link's target's parent."""
    link = COMFY_DIR / "custom_nodes" / "inst_styleforge_linked_for_test"
    os.symlink(REPO_ROOT, link)
    try:
        result = batch_command("--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"),
                               "--checkpoint", tiny_models["tiny_sd15_taesd"].name, script=link / "batch" / "cli.py",
                               comfyui=None)
    finally:
        link.unlink()
    assert result.returncode == USAGE_ERROR, result.stderr
    assert f"batch: --manifest: cannot read {tmp_path / 'none.csv'}" in result.stderr


def test_a_worker_that_fits_on_no_node_is_refused_naming_the_flag_not_waited_for(models, tmp_path):
    """More cores per worker than the machine has would leave the worker unscheduled forever."""
    write_manifest(tmp_path / "manifest.csv", [dict(SF_ROW, name="x")])
    too_many = str(4 * os.cpu_count())
    status, err = refusal("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"), *models,
                          "--cpus-per-worker", too_many)
    assert status == USAGE_ERROR
    assert f"batch: --cpus-per-worker: {too_many} per worker, but the largest node of this Ray has" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".batch.lock"]  # no report, no file


INTERRUPTED = 130
STARTED_TIMEOUT_S = 120


def test_ctrl_c_ends_the_command_with_the_report_of_what_finished(models, tmp_path):
    """Ctrl-C (SIGINT) once the jobs are handed out: exit 130, a message saying how to go on, and the
    report with the row marked interrupted; no file half-written."""
    write_manifest(tmp_path / "manifest.csv", [dict(SF_ROW, name="long", steps="1000")])
    command = command_line("--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"), *models)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen, deadline = "", time.monotonic() + STARTED_TIMEOUT_S
        while "jobs to train" not in seen and process.poll() is None and time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 0.1)[0]:
                seen += process.stderr.readline()
        assert "batch: 1 of 1 jobs to train on 1 workers" in seen, seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=STARTED_TIMEOUT_S)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == INTERRUPTED, err
    assert "batch: interrupted; 0 of 1 rows are done; run the same command again to train the rest" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(r["name"], r["status"]) for r in report] == [("long", "interrupted")]
    assert not list((tmp_path / "out").rglob("*.safetensors"))
