"""The cluster path as the README gives it, on Ray's own multi-node test cluster on this machine: two
nodes of one CPU each, on 127.0.0.1, with token authentication on. `ray job submit` of the batch
command with `--address auto` (ComfyUI's Python as the job's) trains two rows on two workers, one on
each node, into the output folder both share; a submission without the token is refused. The cluster's
processes are stopped in finally."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from test_batch import SF_ROW, write_inputs, write_manifest

from batch.bootstrap import LOCAL_RAY
from devhost.comfy_server import free_port
from devhost.paths import BASE_DIR, COMFY_DIR, REPO_ROOT

RAY = Path(sys.executable).parent / "ray"  # the `ray` command of ComfyUI's Python environment
SUBMIT_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60
ROWS = [dict(SF_ROW, name=f"cluster_lora_{n}", seed=str(n), steps="1") for n in range(2)]


@pytest.fixture(scope="module")
def cluster():
    """(the dashboard's address, the environment that holds the token) of a two-node cluster started with
    the README's `RAY_AUTH_MODE=token RAY_AUTH_TOKEN=...`, in a process of its own (devhost.ray_cluster)."""
    env = {**os.environ, **LOCAL_RAY, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    process = subprocess.Popen([sys.executable, "-m", "devhost.ray_cluster", "--dashboard-port", str(free_port())],
                               cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(process.stdout.readline() or "{}")
        assert "dashboard" in started, "the test cluster did not start"
        yield started["dashboard"], env
    finally:
        process.stdin.close()  # it stops the cluster's processes, then ends
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def submit(address: str, env: dict, *entrypoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), "job", "submit", "--address", address, "--", *entrypoint], env=env,
                          capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)


def test_a_submitted_batch_trains_on_both_nodes_into_the_shared_folder(cluster, tiny_models, tmp_path):
    address, env = cluster
    write_inputs()
    write_manifest(tmp_path / "manifest.csv", ROWS)
    out = tmp_path / "shared_out"
    result = submit(address, env, sys.executable, str(REPO_ROOT / "batch" / "cli.py"), "--address", "auto",
                    "--comfyui", str(COMFY_DIR), "--base-dir", str(BASE_DIR), "--cpu",
                    "--manifest", str(tmp_path / "manifest.csv"), "--out", str(out),
                    "--checkpoint", tiny_models["tiny_sd15_taesd"].name, "--workers", "2", "--cpus-per-worker", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [(r["name"], r["status"]) for r in report] == [(row["name"], "done") for row in ROWS]
    assert len({r["node"] for r in report}) == 2  # one row on each node
    assert all((out / f).is_file() for r in report for f in r["files"])


def test_a_submission_without_the_token_is_refused(cluster):
    address, env = cluster
    without = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    result = submit(address, without, "true")
    assert result.returncode != 0
    assert "token" in result.stderr.lower()
