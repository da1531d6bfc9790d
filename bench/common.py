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
    """Records the time of every progress update, i.e. of every optimizer step."""

    def __init__(self):
        import comfy.utils

        self.stamps: list[float] = []
        comfy.utils.set_progress_bar_global_hook(lambda *args, **kwargs: self.stamps.append(time.perf_counter()))

    def step_seconds(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])][skip:]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measurement(script: Path, name: str, args: list[str]) -> dict:
    """One measurement in its own process, so peak memory is its own; returns its JSON line."""
    out = subprocess.run([sys.executable, str(script), "--measure", name, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, seconds: list[float], extra: dict | None = None) -> None:
    print(json.dumps({"name": name, "median_s": statistics.median(seconds), "n": len(seconds),
                      "peak_rss_mb": round(peak_rss_mb()), **(extra or {})}))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"
