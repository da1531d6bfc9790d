"""The batch path on Ray with the tiny fixtures. The command, as a user runs it (a subprocess that starts
its own Ray), trains one manifest on two CPU workers: its styles and LoRAs equal the single-process
trainers' (same seeds), its bad rows fail alone, named by row and field, and it writes its report.
In this process, on a Ray of its own: a rerun does no work, and a worker killed mid-job is replaced
and its job finished with no partial file."""

import contextlib
import csv
import json
import subprocess
import sys
import time

import pytest
import ray
import torch
from images_for_tests import painting_tensor

from devhost.example_inputs import painting, write_examples
from devhost.paths import BASE_DIR, COMFY_DIR, REPO_ROOT

INST_ROW = {"kind": "inst", "steps": "3", "learning_rate": "0.001", "resolution": "64"}
SF_ROW = {"kind": "styleforge", "style_images": "styleforge_example/styleref", "aux": "styleforge_example/aux",
          "steps": "2", "unet_lr": "0.001", "rank": "4", "resolution": "64"}
WORKER_THREADS = 1  # each CPU worker trains with one torch thread (one core each)
COMMAND_TIMEOUT_S = 600


def write_manifest(path, rows: list[dict]) -> None:
    columns = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_inputs() -> None:
    write_examples(BASE_DIR / "input")
    for seed in range(4):
        painting(seed).save(BASE_DIR / "input" / f"batch_painting_{seed}.png")


def batch_command(*flags: str) -> subprocess.CompletedProcess:
    """The batch command on the dev host's ComfyUI, on the CPU."""
    command = [sys.executable, str(REPO_ROOT / "batch" / "cli.py"), "--comfyui", str(COMFY_DIR), "--base-dir",
               str(BASE_DIR), "--cpu", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


@pytest.fixture(scope="module")
def batch(pkg, tiny_models):
    """The batch modules with Ray started in this process (one worker), shut down afterwards."""
    from inst_styleforge.batch import manifest, pool

    write_inputs()
    setup = pool.Setup(str(COMFY_DIR), str(REPO_ROOT), str(tiny_models["tiny_sd15_taesd"]),
                       str(tiny_models["tiny_clip_vision_vitl"]), str(BASE_DIR), cpu=True)
    trainers = None
    try:
        pool.connect(setup, num_cpus=2)
        trainers = pool.TrainerPool(setup, workers=1, cpus_per_worker=WORKER_THREADS)
        yield manifest, pool, trainers
    finally:
        if trainers is not None:
            trainers.close()
        ray.shutdown()


@contextlib.contextmanager
def threads_of_a_worker():
    """The single-process reference computed with a worker's thread count, so it sums in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(WORKER_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(batch, rows, out, **kwargs):
    manifest, pool, trainers = batch
    write_manifest(out / "manifest.csv", rows)
    jobs = manifest.read_manifest(out / "manifest.csv", BASE_DIR / "input")
    return pool.run_batch(jobs, trainers, out, **kwargs)


# One manifest trained once for the tests that compare or rerun it: two styles and two LoRAs on two
# workers, then three bad rows, each to fail alone.
TRAINED_ROWS = ([dict(INST_ROW, name=f"style_{s}", painting=f"batch_painting_{s}.png", seed=str(s)) for s in range(2)]
                + [dict(SF_ROW, name=f"lora_{s}", seed=str(s)) for s in range(2)])
BAD_ROWS = [dict(INST_ROW, name="missing", painting="no_such_painting.png"),
            dict(INST_ROW, name="wrong_number", painting="batch_painting_2.png", steps="many"),
            dict(INST_ROW, name="tiny", painting="batch_painting_2.png", resolution="68")]


@pytest.fixture(scope="module")
def trained(pkg, tiny_models, tmp_path_factory):
    """(the output folder, the report, the command's wall seconds, its result) of TRAINED_ROWS + BAD_ROWS,
    trained by the command on two workers."""
    out = tmp_path_factory.mktemp("trained_batch")
    write_inputs()
    write_manifest(out / "manifest.csv", TRAINED_ROWS + BAD_ROWS)
    started = time.monotonic()
    result = batch_command("--manifest", str(out / "manifest.csv"), "--out", str(out),
                           "--checkpoint", tiny_models["tiny_sd15_taesd"].name,
                           "--clip-vision", tiny_models["tiny_clip_vision_vitl"].name,
                           "--workers", "2", "--cpus-per-worker", str(WORKER_THREADS))
    seconds = time.monotonic() - started
    return out, json.loads((out / "report.json").read_text()), seconds, result


def test_the_command_writes_its_report_and_exits_1_when_a_row_failed(trained):
    out, report, _, result = trained
    assert result.returncode == 1, result.stderr  # rows failed
    assert f"report: {out / 'report.json'}" in result.stdout
    total = len(TRAINED_ROWS + BAD_ROWS)
    assert f"batch: {total}/{total} jobs ended (0 skipped, {len(BAD_ROWS)} failed)" in result.stderr
    assert report[0]["files"] == ["inst_styles/style_0.safetensors", "embeddings/style_0.safetensors"]
    assert all((out / f).is_file() for r in report for f in r.get("files", []))


def test_styles_on_two_workers_are_the_ones_one_process_gives(trained, sd15, clip_vision):
    from inst_styleforge.inst_core.style_file import load_style
    from inst_styleforge.inst_core.training import InSTTrainingConfig, train_style

    out, reports, batch_seconds, _ = trained
    assert [r["status"] for r in reports[:len(TRAINED_ROWS)]] == ["done"] * len(TRAINED_ROWS)
    model, clip, vae = sd15
    # the second row's style (its own painting and seed), bit for bit; the first row's differs from it
    config = InSTTrainingConfig(steps=3, learning_rate=1e-3, resolution=64, seed=1)
    with torch.inference_mode(), threads_of_a_worker():
        alone = train_style(model, clip, vae, clip_vision, [painting_tensor(1)], config).trained.state_dict()
    first, second = (load_style(out / "inst_styles" / f"style_{s}.safetensors").state_dict() for s in range(2))
    assert all(torch.equal(second[k], v) for k, v in alone.items())
    assert not all(torch.equal(first[k], v) for k, v in alone.items())
    assert all((out / "embeddings" / f"style_{s}.safetensors").exists() for s in range(2))
    report = reports
    assert [r["row"] for r in report] == list(range(1, len(TRAINED_ROWS + BAD_ROWS) + 1))
    assert [r["name"] for r in report[:len(TRAINED_ROWS)]] == [row["name"] for row in TRAINED_ROWS]
    for r in report[:len(TRAINED_ROWS)]:  # each job trained (its eval loss moved), timed within the batch's
        assert r["eval_loss_after"] != r["eval_loss_before"]
        assert 0 < r["seconds"] < batch_seconds


def test_loras_on_two_workers_are_the_ones_one_process_gives(trained, sd15):
    from inst_styleforge.styleforge_core.datasets import load_folder
    from inst_styleforge.styleforge_core.lora_file import load_lora
    from inst_styleforge.styleforge_core.training import StyleForgeConfig, TrainingSets, train_styleforge

    out = trained[0]
    model, clip, vae = sd15
    sets = TrainingSets(load_folder("styleforge_example/styleref"), load_folder("styleforge_example/aux"))
    config = StyleForgeConfig(steps=2, unet_lr=1e-3, rank=4, alpha=4.0, resolution=64, seed=1)
    with torch.inference_mode(), threads_of_a_worker():
        trained_alone = train_styleforge(model, clip, vae, sets, config).trained.tensors
    alone = {k: v.half().float() for k, v in trained_alone.items()}  # as the batch saves it: fp16
    first, second = (load_lora(out / "loras" / f"lora_{s}.safetensors", "test").tensors for s in range(2))
    assert all(torch.equal(second[k].float(), v) for k, v in alone.items())  # the second row's seed
    assert not all(torch.equal(first[k].float(), v) for k, v in alone.items())


def test_rerunning_a_manifest_does_no_work_and_reports_every_job_done(batch, trained):
    out = trained[0]
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    again = _run(batch, TRAINED_ROWS + BAD_ROWS, out)
    assert [r["status"] for r in again] == ["skipped"] * len(TRAINED_ROWS) + ["failed"] * len(BAD_ROWS)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == files


def test_a_worker_killed_mid_job_is_replaced_and_the_job_finished_with_no_partial_file(batch, tmp_path):
    killed = []

    def kill_the_first_worker(job, actor):
        if not killed:
            killed.append(job.name)
            ray.kill(actor, no_restart=True)

    rows = [dict(INST_ROW, name="survivor", painting="batch_painting_0.png", seed="0")]
    [report] = _run(batch, rows, tmp_path, on_started=kill_the_first_worker)
    assert killed == ["survivor"] and report["status"] == "done" and report["attempts"] == 2
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_a_bad_row_fails_alone_named_by_row_and_field(trained):
    reports = trained[1]
    first_bad = len(TRAINED_ROWS) + 1  # manifest rows count from 1
    missing, wrong_number, tiny = reports[len(TRAINED_ROWS):]
    assert [missing["status"], wrong_number["status"], tiny["status"]] == ["failed"] * 3
    assert f"row {first_bad}, field 'painting': 'no_such_painting.png' does not exist" in missing["error"]
    assert wrong_number["error"] == f"row {first_bad + 1}, field 'steps': 'many' is not a int"
    assert "Input 'resolution': 68 is not a multiple of 8" in tiny["error"]
