"""The test suite's time from a fresh clone, as CI runs it: clones this repository's HEAD into a
temporary folder, runs `.ci/run` there (installation, fixtures, Chromium and pytest included), and
records the whole time, pytest's own time, the test count and pytest's slowest tests.

    python3 bench/suite_time.py          # writes bench/results/suite_fresh_clone.json

Exits with the suite's exit status; the record is written only when the suite passed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.recorded import REPO_ROOT, record  # noqa: E402

SUMMARY = re.compile(r"=+ (?P<passed>\d+) passed.* in (?P<seconds>[\d.]+)s")
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s (?P<when>call|setup|teardown)\s+(?P<test>\S.*)$")


def main() -> int:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    chromium_installed = shutil.which("chromium") is not None  # else .ci/run installs it, in the time
    folder = Path(tempfile.mkdtemp(prefix="suite-time-"))
    try:
        clone = folder / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        started = time.monotonic()
        run = subprocess.run(["bash", ".ci/run"], cwd=clone, capture_output=True, text=True,
                             env=dict(os.environ, CI="true"))
        total = time.monotonic() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    output = run.stdout + run.stderr
    print(output[-6000:])
    summary = SUMMARY.search(output)
    if run.returncode != 0 or summary is None:
        print(f"suite_time: the suite failed (exit {run.returncode}); nothing recorded", file=sys.stderr)
        return run.returncode or 1
    slowest = [m.groupdict() for line in output.splitlines() if (m := DURATION.match(line.strip()))]
    record("suite_fresh_clone", {"total_s": round(total, 1), "chromium_preinstalled": chromium_installed,
                                 "pytest_s": float(summary["seconds"]), "tests": int(summary["passed"]),
                                 "slowest": [{**d, "seconds": float(d["seconds"])} for d in slowest[:15]]},
           machine_text=f"{os.cpu_count()} CPU cores", commit=commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
