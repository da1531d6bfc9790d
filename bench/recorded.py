"""Benchmark results as recorded runs: each benchmark writes what it measured to `bench/results/`, one
JSON file per benchmark and setting, and every figure the README and the templates quote is read from
these files (`bench/figures.py`), never typed in. A file says how it was made: the command, the
commit, the machine and the date, so a figure can be traced to its run and measured again.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"


def _commit() -> str:
    """The commit measured, with "+changes" when the tree had uncommitted edits to tracked files."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    import torch

    return f"{os.cpu_count()} CPU cores, {platform.machine()}, torch {torch.__version__}"


def record(name: str, results: dict, *, machine_text: str | None = None, commit: str | None = None) -> Path:
    """Write bench/results/<name>.json (replacing an earlier run of the same name): `results` and how
    they were made (`commit`: the one measured, when it is not this tree's). Returns the file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    entry = {"name": name, "command": " ".join(["python", *sys.argv]), "commit": commit or _commit(),
             "date": datetime.date.today().isoformat(), "machine": machine_text or machine(), "results": results}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"recorded: {path.relative_to(REPO_ROOT)}")
    return path


def load(name: str) -> dict:
    """A recorded run (the whole entry: results, command, commit, machine, date)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no recorded run {path.relative_to(REPO_ROOT)}; run the benchmark that writes it")
    return json.loads(path.read_text())
