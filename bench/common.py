"""Shared by the benchmarks: the dev host in-process, per-step timing through ComfyUI's progress hook,
peak memory from separate processes, medians and ratios.

Every trainer reports each optimizer step through `comfy.utils.ProgressBar` (ours and ComfyUI's
TrainLoraNode alike), so one global progress hook times both the same way.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO_ROOT))

from devhost import fixtures  # noqa: E402
from devhost.inprocess import import_comfy, import_package  # noqa: E402


def setup() -> None:
    import_comfy()
    import_package()
    for fx in fixtures.ALL_FIXTURES:
        fixtures.install(fx)


class StepClock:
    """Installed as ComfyUI's progress hook: records the time of every update, i.e. of every step.
    With `peak_from`, the peak RSS is reset once that many steps have ended (the setup's peak, VAE
    encoding included, kept in `setup_peak_mb`), so VmHWM afterwards is the peak of the steps alone."""

    def __init__(self, peak_from: int | None = None):
        import comfy.utils

        self.stamps: list[float] = []
        self.peak_from = peak_from
        self.setup_peak_mb = 0.0
        comfy.utils.set_progress_bar_global_hook(self)

    def __call__(self, value, total, preview, node_id=None) -> None:
        self.stamps.append(time.perf_counter())
        if len(self.stamps) == self.peak_from:
            self.setup_peak_mb = status_mb("VmHWM")
            reset_peak_rss()

    def step_seconds(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])][skip:]


def process_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS now, VmHWM peak since the last reset) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, so loading the checkpoint (whose own peak is
    higher than a small training run's) does not hide what training adds."""
    Path("/proc/self/clear_refs").write_text("5")


def run_measurement(script: Path, name: str, args: list[str]) -> dict:
    """One measurement in its own process, so peak memory is its own; returns its last JSON line
    (ComfyUI may print other lines to stdout)."""
    out = subprocess.run([sys.executable, str(script), "--measure", name, *args], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{name} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def report(name: str, seconds: list[float], extra: dict | None = None) -> None:
    print(json.dumps({"name": name, "median_s": statistics.median(seconds), "n": len(seconds),
                      "peak_rss_mb": round(status_mb("VmHWM")), **(extra or {})}))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"
