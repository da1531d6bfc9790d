"""The batch on Ray: a pool of trainer actors (one GPU each, or one CPU each), each loading the models
once and then training job after job; jobs go to whichever actor is free; a job whose actor dies is
retried on a fresh actor a bounded number of times; a job that fails on its own inputs is reported
and not retried; a row already done is skipped. The jobs write their files themselves, atomically."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from ray.exceptions import RayActorError, RayTaskError

from ..training_kit.errors import InputError
from ..training_kit.files import atomic_write
from . import bootstrap
from .jobs import JobReport, Models, already_done, run_job
from .manifest import BadRow, Job

RETRIES = 2  # times a job whose worker died is tried again
REPORT = "report.json"


@dataclass(frozen=True)
class Setup:
    """Where a worker finds ComfyUI, this package and the models."""

    comfy_dir: str
    package_dir: str
    checkpoint: str
    clip_vision: str | None
    base_dir: str | None = None
    cpu: bool = False


def connect(setup: Setup, address: str | None = None, num_cpus: int | None = None) -> None:
    """Start Ray here (address None) or join a running cluster ("auto" inside `ray job submit`). Every
    worker process first loads ComfyUI and this package as `setup` says, so the trainer class and
    the jobs it receives can be unpickled there."""
    ray.cloudpickle.register_pickle_by_value(bootstrap)  # the hook runs before the package exists there
    hook = bootstrap.worker_setup_hook(setup.comfy_dir, setup.package_dir, setup.base_dir, setup.cpu)
    local = {"num_cpus": num_cpus, "include_dashboard": False} if address is None else {}
    ray.init(address=address, runtime_env={"worker_process_setup_hook": hook}, log_to_driver=False, **local)


class Trainer:
    """One worker: the models loaded once, then one job after another."""

    def __init__(self, setup: Setup):
        if setup.cpu:  # torch would start a thread per core in every worker: N workers would oversubscribe
            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.models = Models.load(Path(setup.checkpoint), Path(setup.clip_vision) if setup.clip_vision else None)

    def run(self, job: Job, out: str) -> dict:
        try:
            return dataclasses.asdict(run_job(self.models, job, Path(out)))
        except InputError as error:  # the row's own inputs: retrying cannot help
            return dataclasses.asdict(JobReport(job.row, job.kind, job.name, "failed", error=str(error)))


class TrainerPool:
    """`workers` trainer actors; a dead one is replaced by a fresh one. On the CPU a worker trains with
    `cpus_per_worker` threads."""

    def __init__(self, setup: Setup, workers: int, gpus_per_worker: float = 0.0, cpus_per_worker: int = 1):
        self.setup = setup
        self.actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0)(Trainer)
        self.actors = [self.actor_class.remote(setup) for _ in range(workers)]

    def replace(self, actor) -> None:
        self.actors[self.actors.index(actor)] = self.actor_class.remote(self.setup)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


def run_batch(jobs: list[Job | BadRow], pool: TrainerPool, out: Path, on_started=None) -> list[dict]:
    """Every row's report, in row order; also written to `<out>/report.json`. Rows already done are
    skipped; bad rows fail alone. `on_started(job, actor)` is called as each job is handed out (tests
    use it to kill a worker mid-job)."""
    left, skipped = skip_done(jobs, out)
    reports: dict[int, dict] = {r["row"]: r for r in skipped}
    reports.update({bad.row: {"row": bad.row, "status": "failed", "error": str(bad), "attempts": 0}
                    for bad in left if isinstance(bad, BadRow)})
    todo = [job for job in left if isinstance(job, Job)]
    attempts: dict[int, int] = {}
    running: dict = {}  # object ref -> (job, actor)
    progress = _Progress(len(jobs), list(reports.values()))
    while todo or running:
        busy = {id(actor) for _, actor in running.values()}
        for actor in [a for a in pool.actors if id(a) not in busy]:
            if not todo:
                break
            job = todo.pop(0)
            attempts[job.row] = attempts.get(job.row, 0) + 1
            running[actor.run.remote(job, str(out))] = (job, actor)
            if on_started is not None:
                on_started(job, actor)
        finished, _ = ray.wait(list(running), num_returns=1)
        job, actor = running.pop(finished[0])
        try:
            report = ray.get(finished[0])
        except RayActorError as error:
            pool.replace(actor)
            if attempts[job.row] <= RETRIES:
                todo.insert(0, job)
                continue
            report = {"row": job.row, "kind": job.kind, "name": job.name, "status": "failed",
                      "error": f"its worker died {attempts[job.row]} times ({type(error).__name__})"}
        except RayTaskError as error:  # an unexpected error in the job itself: reported, the batch goes on
            report = {"row": job.row, "kind": job.kind, "name": job.name, "status": "failed",
                      "error": f"{type(error.cause).__name__}: {error.cause}"}
        report["attempts"] = attempts[job.row]
        reports[job.row] = report
        progress.finished(report, len(running))
    ordered = [reports[row] for row in sorted(reports)]
    with atomic_write(out / REPORT) as tmp:
        Path(tmp).write_text(json.dumps(ordered, indent=1) + "\n")
    return ordered


def skip_done(jobs: list[Job | BadRow], out: Path) -> tuple[list[Job | BadRow], list[dict]]:
    """(the rows still to run, the reports of those already done), checked in this process."""
    left, skipped = [], []
    for job in jobs:
        if isinstance(job, Job) and already_done(job, out):
            skipped.append({"row": job.row, "kind": job.kind, "name": job.name, "status": "skipped", "attempts": 0})
        else:
            left.append(job)
    return left, skipped


class _Progress:
    """One line over the jobs: how many have ended (skipped and failed among them), how many run."""

    def __init__(self, total: int, ended: list[dict]):
        self.total, self.t0 = total, time.time()
        self.ended = {status: sum(r["status"] == status for r in ended) for status in ("done", "skipped", "failed")}

    def finished(self, report: dict, running: int) -> None:
        self.ended[report["status"]] += 1
        count = sum(self.ended.values())
        print(f"\rbatch: {count}/{self.total} jobs ended ({self.ended['skipped']} skipped, {self.ended['failed']} "
              f"failed), {running} running, {time.time() - self.t0:.0f} s", end="\n" if count == self.total else "",
              file=sys.stderr, flush=True)
