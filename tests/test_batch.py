"""The batch path on Ray with the tiny fixtures. The command, as a user runs it (a subprocess that starts
its own Ray), trains one manifest on two CPU workers: its styles and LoRAs equal the single-process
trainers' (same seeds), it writes its report, and its Ray listens on loopback only. In this process, on
a Ray of its own: a rerun does no work, workers that fit nowhere are refused, a worker killed mid-job
is replaced and its job finished with no partial file."""

import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import ray
import torch
from images_for_tests import painting_tensor

from batch.bootstrap import LOCAL_RAY
from devhost.example_inputs import painting, write_examples
from devhost.paths import BASE_DIR, COMFY_DIR, REPO_ROOT

INST_ROW = {"kind": "inst", "steps": "3", "learning_rate": "0.001", "resolution": "64"}
SF_ROW = {"kind": "styleforge", "style_images": "styleforge_example/styleref", "aux": "styleforge_example/aux",
          "steps": "2", "unet_lr": "0.001", "rank": "4", "resolution": "64"}
WORKER_THREADS = 1  # each CPU worker trains with one torch thread (one core each)
COMMAND_TIMEOUT_S = 600
USUAL_UMASK = 0o022  # the command runs as from a usual shell
POLL_S = 0.1  # how often a running command is looked at (its exit, its listening ports)


def write_manifest(path, rows: list[dict], encoding: str = "utf-8") -> None:
    columns = sorted({key for row in rows for key in row})
    with path.open("w", newline="", encoding=encoding) as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_inputs() -> None:
    write_examples(BASE_DIR / "input")
    for seed in range(4):
        painting(seed).save(BASE_DIR / "input" / f"batch_painting_{seed}.png")


def command_line(*flags: str, script=REPO_ROOT / "batch" / "cli.py", comfyui=COMFY_DIR) -> list[str]:
    """The batch command on the dev host's ComfyUI (`comfyui` None: the command's default), on the CPU."""
    return [sys.executable, str(script), *(["--comfyui", str(comfyui)] if comfyui else []), "--base-dir",
            str(BASE_DIR), "--cpu", *flags]


def batch_command(*flags: str, script=REPO_ROOT / "batch" / "cli.py", comfyui=COMFY_DIR,
                  env: dict | None = None, listening: set | None = None) -> subprocess.CompletedProcess:
    """The command (`command_line`) run to its end. `listening` collects the (address, process) of every
    port its processes listen on while it runs."""
    command = command_line(*flags, script=script, comfyui=comfyui)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        environment = {k: v for k, v in os.environ.items() if k not in LOCAL_RAY}  # as a user's shell has it
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**environment, **(env or {})},
                                   umask=USUAL_UMASK)
        try:
            deadline = time.monotonic() + COMMAND_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if listening is not None:
                    listening.update(_listening(psutil.Process(process.pid)))
                time.sleep(POLL_S)
        finally:
            process.kill()
            process.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())


def _listening(process: psutil.Process) -> set[tuple[str, str]]:
    found = set()
    with contextlib.suppress(psutil.Error):
        for p in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                found |= {(c.laddr.ip, p.name()) for c in p.net_connections(kind="inet") if c.status == "LISTEN"}
    return found


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


# One manifest trained once for the tests that compare or rerun it: a style and a LoRA, one on each of
# two workers. Their seed (1) is neither trainer's default and the style's painting is not the first, so
# equal to a single-process run with that seed and painting means the row's own were used.
TRAINED_ROWS = [dict(INST_ROW, name="style_1", painting="batch_painting_1.png", seed="1"),
                dict(SF_ROW, name="lora_1", seed="1")]
# Where a Ray cluster would be found if the command looked for one: a local run must not.
A_CLUSTER_NOT_ASKED_FOR = {"RAY_ADDRESS": "127.0.0.1:9"}


@dataclass
class Trained:
    out: Path
    report: list[dict]
    seconds: float  # the command's wall time
    result: subprocess.CompletedProcess
    listening: set  # (address, process) of every port the command's processes listened on


@pytest.fixture(scope="module")
def trained(pkg, tiny_models, tmp_path_factory) -> Trained:
    """TRAINED_ROWS trained by the command on two workers, with RAY_ADDRESS naming a cluster it was not
    asked to join."""
    out = tmp_path_factory.mktemp("trained_batch")
    write_inputs()
    write_manifest(out / "manifest.csv", TRAINED_ROWS)
    started, listening = time.monotonic(), set()
    result = batch_command("--manifest", str(out / "manifest.csv"), "--out", str(out),
                           "--checkpoint", tiny_models["tiny_sd15_taesd"].name,
                           "--clip-vision", tiny_models["tiny_clip_vision_vitl"].name,
                           "--workers", "2", "--cpus-per-worker", str(WORKER_THREADS), env=A_CLUSTER_NOT_ASKED_FOR,
                           listening=listening)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    return Trained(out, json.loads((out / "report.json").read_text()), seconds, result, listening)


def test_the_command_trains_every_row_on_a_ray_of_its_own_and_writes_its_report(trained):
    assert f"report: {trained.out / 'report.json'}" in trained.result.stdout
    total = len(TRAINED_ROWS)
    assert f"batch: {total}/{total} jobs ended (0 skipped, 0 failed)" in trained.result.stderr
    assert trained.report[0]["files"] == ["inst_styles/style_1.safetensors", "embeddings/style_1.safetensors"]
    written = [trained.out / f for r in trained.report for f in r["files"]]
    assert all(f.is_file() for f in written)
    # as ComfyUI's own saves: 0644 under the usual umask, so other users of the machine can read them
    assert {oct(f.stat().st_mode & 0o777) for f in written} == {oct(0o644)}


def test_the_commands_ray_listens_on_loopback_only(trained):
    """Ray's own guidance is never to expose it to untrusted networks: every port the command's processes
    (Ray's servers, its workers) listened on while it ran is on 127.0.0.1."""
    servers = {name for _, name in trained.listening}
    assert {"gcs_server", "raylet"} <= servers, trained.listening
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, _ in trained.listening), trained.listening


def test_styles_on_two_workers_are_the_ones_one_process_gives(trained, sd15, clip_vision):
    from inst_styleforge.inst_core.style_file import load_style
    from inst_styleforge.inst_core.training import InSTTrainingConfig, train_style

    out, reports = trained.out, trained.report
    assert [r["status"] for r in reports] == ["done"] * len(TRAINED_ROWS)
    model, clip, vae = sd15
    # the row's style (its own painting and seed), bit for bit
    config = InSTTrainingConfig(steps=3, learning_rate=1e-3, resolution=64, seed=1)
    with torch.inference_mode(), threads_of_a_worker():
        alone = train_style(model, clip, vae, clip_vision, [painting_tensor(1)], config).trained.state_dict()
    batched = load_style(out / "inst_styles" / "style_1.safetensors").state_dict()
    assert alone.keys() == batched.keys() and all(torch.equal(batched[k], v) for k, v in alone.items())
    assert (out / "embeddings" / "style_1.safetensors").exists()
    assert [r["row"] for r in reports] == list(range(1, len(TRAINED_ROWS) + 1))
    assert [r["name"] for r in reports] == [row["name"] for row in TRAINED_ROWS]
    for r in reports:  # each job trained (its eval loss moved), timed within the batch's
        assert r["eval_loss_after"] != r["eval_loss_before"]
        assert 0 < r["seconds"] < trained.seconds


def test_loras_on_two_workers_are_the_ones_one_process_gives(trained, sd15):
    from inst_styleforge.styleforge_core.datasets import load_folder
    from inst_styleforge.styleforge_core.lora_file import load_lora
    from inst_styleforge.styleforge_core.training import StyleForgeConfig, TrainingSets, train_styleforge

    out = trained.out
    model, clip, vae = sd15
    sets = TrainingSets(load_folder("styleforge_example/styleref"), load_folder("styleforge_example/aux"))
    config = StyleForgeConfig(steps=2, unet_lr=1e-3, rank=4, alpha=4.0, resolution=64, seed=1)
    with torch.inference_mode(), threads_of_a_worker():
        trained_alone = train_styleforge(model, clip, vae, sets, config).trained.tensors
    alone = {k: v.half().float() for k, v in trained_alone.items()}  # as the batch saves it: fp16
    batched = load_lora(out / "loras" / "lora_1.safetensors", "test").tensors
    assert alone.keys() == batched.keys() and all(torch.equal(batched[k].float(), v) for k, v in alone.items())


def test_rerunning_a_manifest_does_no_work_and_reports_every_job_skipped(batch, trained):
    out = trained.out
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    again = _run(batch, TRAINED_ROWS, out)
    assert [r["status"] for r in again] == ["skipped"] * len(TRAINED_ROWS)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == files


def test_a_worker_that_fits_no_node_is_refused_naming_the_flag(batch):
    _, pool, _ = batch  # this Ray has 2 CPUs and no GPU
    with pytest.raises(pool.BatchError, match=r"--cpus-per-worker: 8 per worker, but the largest node of this Ray "
                                              r"has 2 CPUs\. Ask for at most 2\."):
        pool.require_resources(1, 8, 0)
    with pytest.raises(pool.BatchError, match=r"--workers: 3 workers x 1 CPUs is more than the 2 this Ray has\. "
                                              r"Use at most 2 workers\."):
        pool.require_resources(3, 1, 0)
    with pytest.raises(pool.BatchError, match=r"--gpus-per-worker: 1 per worker, but the largest node of this Ray "
                                              r"has 0 GPUs"):
        pool.require_resources(1, 1, 1)
    pool.require_resources(2, 1, 0)


def test_a_worker_killed_mid_job_is_replaced_and_a_row_failing_on_its_input_is_not_retried(batch, tmp_path):
    """The killed worker's job finishes on a fresh worker with no partial file; a row whose painting went
    away after the manifest was checked fails alone, once, named by its input."""
    manifest, pool, trainers = batch
    killed = []

    def kill_the_first_worker(job, actor):
        if not killed:
            killed.append(job.name)
            ray.kill(actor, no_restart=True)

    gone = BASE_DIR / "input" / "batch_painting_gone.png"
    painting(3).save(gone)
    rows = [dict(SF_ROW, name="survivor", seed="0", steps="1"), dict(INST_ROW, name="vanished", painting=gone.name)]
    write_manifest(tmp_path / "manifest.csv", rows)
    jobs = manifest.read_manifest(tmp_path / "manifest.csv", BASE_DIR / "input")
    gone.unlink()
    survivor, vanished = pool.run_batch(jobs, trainers, tmp_path, on_started=kill_the_first_worker)
    assert killed == ["survivor"] and survivor["status"] == "done" and survivor["attempts"] == 2
    assert vanished["status"] == "failed" and vanished["attempts"] == 1
    assert "Input 'painting': 'batch_painting_gone.png' is not a readable image" in vanished["error"]
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
