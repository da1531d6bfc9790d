"""The batch on Ray: a pool of trainer actors (one GPU each, or one CPU each), each loading the models
once and then training job after job; jobs go to whichever actor is free; a job whose actor dies is
retried on a fresh actor a bounded number of times; a job that fails on its own inputs is reported
and not retried; a row already done is skipped. The jobs write their files themselves, atomically.
One batch at a time writes to an output folder (a lock), and Ctrl-C ends it with the report of
what finished."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import signal
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
from .manifest import Job

RETRIES = 2  # times a job whose worker died is tried again
REPORT = "report.json"
LOCK = ".batch.lock"
CTRL_C_POLL_S = 0.2  # how often a running batch looks whether Ctrl-C was pressed


class BatchError(Exception):
    """A batch that cannot start as asked: the message names the flag and the fix."""


class Interrupted(Exception):
    """Ctrl-C during a batch: the report of what finished is written; the message says what it holds."""


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
    """Start Ray on this machine (address None: never joining a cluster it would find; on 127.0.0.1 only
    when `bootstrap.keep_ray_on_loopback` ran first) or join a running cluster ("auto" inside `ray job
    submit`). Every worker process first loads ComfyUI and this package as `setup` says, so the trainer
    class and the jobs it receives can be unpickled there."""
    ray.cloudpickle.register_pickle_by_value(bootstrap)  # the hook runs before the package exists there
    hook = bootstrap.worker_setup_hook(setup.comfy_dir, setup.package_dir, setup.base_dir, setup.cpu)
    local = {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(address=address or "local", runtime_env={"worker_process_setup_hook": hook}, log_to_driver=False,
             **(local if address is None else {}))


def disconnect() -> None:
    ray.shutdown()


def require_resources(workers: int, cpus_per_worker: int, gpus_per_worker: float) -> None:
    """Every worker fits on a node of the Ray it runs on: an actor that fits nowhere waits forever."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    asked = {"CPU": (cpus_per_worker, "--cpus-per-worker"), "GPU": (gpus_per_worker, "--gpus-per-worker")}
    for resource, (per_worker, flag) in asked.items():
        largest = max((node.get(resource, 0) for node in nodes), default=0)
        total = sum(node.get(resource, 0) for node in nodes)
        if per_worker > largest:
            raise BatchError(f"{flag}: {per_worker:g} per worker, but the largest node of this Ray has {largest:g} "
                             f"{resource}s. Ask for at most {largest:g}" + (" (train on GPUs without --cpu)."
                                                                          if resource == "GPU" else "."))
        if workers * per_worker > total:
            raise BatchError(f"--workers: {workers} workers x {per_worker:g} {resource}s is more than the "
                             f"{total:g} this Ray has. Use at most {int(total // per_worker)} workers.")


def lock_output(out: Path):
    """Hold `out` for this batch alone (released when the process ends, however it ends): two batches
    into one folder would train every row twice and race on its files."""
    out.mkdir(parents=True, exist_ok=True)
    lock = (out / LOCK).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise BatchError(f"--out: another batch is writing to {out}. Wait for it to end, or pick another "
                         "folder.") from None
    return lock


class Trainer:
    """One worker: the models loaded once, then one job after another."""

    def __init__(self, setup: Setup):
        if setup.cpu:  # torch would start a thread per core in every worker: N workers would oversubscribe
            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.models = Models.load(Path(setup.checkpoint), Path(setup.clip_vision) if setup.clip_vision else None)

    def run(self, job: Job, out: str) -> dict:
        node = ray.get_runtime_context().get_node_id()
        try:
            return dataclasses.asdict(dataclasses.replace(run_job(self.models, job, Path(out)), node=node))
        except InputError as error:  # the row's own inputs: retrying cannot help
            return dataclasses.asdict(JobReport(job.row, job.kind, job.name, "failed", error=str(error), node=node))


class TrainerPool:
    """`workers` trainer actors; a dead one is replaced by a fresh one. On the CPU a worker trains with
    `cpus_per_worker` threads."""

    def __init__(self, setup: Setup, workers: int, gpus_per_worker: float = 0.0, cpus_per_worker: int = 1):
        self.setup = setup
        self.actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0)(Trainer)
        self.actors = [self.actor_class.remote(setup) for _ in range(workers)]

    def replace(self, actor) -> None:
        """A fresh actor in place of `actor`, which is stopped (it may be dead already)."""
        ray.kill(actor)
        self.actors[self.actors.index(actor)] = self.actor_class.remote(self.setup)

    def stop(self, actor) -> None:
        """`actor` stopped and left out of the pool (its job ends with it)."""
        ray.kill(actor)
        self.actors.remove(actor)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


def run_batch(jobs: list[Job], pool: TrainerPool, out: Path, on_started=None) -> list[dict]:
    """Every row's report, in row order; also written to `<out>/report.json`. Rows already done are
    skipped. On Ctrl-C the workers' jobs are stopped, the rows not done are reported 'interrupted' and
    Interrupted is raised. `on_started(job, actor)` is called as each job is handed out (tests use it to
    kill a worker mid-job)."""
    todo, skipped = skip_done(jobs, out)
    reports: dict[int, dict] = {r["row"]: r for r in skipped}
    attempts: dict[int, int] = {}
    running: dict = {}  # object ref -> (job, actor)
    progress = _Progress(len(jobs), list(reports.values()))
    with CtrlC() as ctrl_c:
        progress.started(len(todo), len(pool.actors))
        while (todo or running) and not ctrl_c.pressed:
            busy = {id(actor) for _, actor in running.values()}
            for actor in [a for a in pool.actors if id(a) not in busy]:
                if not todo:
                    break
                job = todo.pop(0)
                attempts[job.row] = attempts.get(job.row, 0) + 1
                running[actor.run.remote(job, str(out))] = (job, actor)
                if on_started is not None:
                    on_started(job, actor)
            finished, _ = ray.wait(list(running), num_returns=1, timeout=CTRL_C_POLL_S)
            if not finished:
                continue
            job, actor = running.pop(finished[0])
            report = _outcome(finished[0], job, actor, pool, attempts[job.row])
            if report is None:  # its worker died: tried again
                todo.insert(0, job)
                continue
            reports[job.row] = report
            progress.finished(report, len(running))
    if ctrl_c.pressed:
        for _, actor in running.values():
            pool.stop(actor)  # a worker stopped mid-write leaves no file: the writes are atomic
        for job in jobs:
            reports.setdefault(job.row, _row_report(job, "interrupted", attempts=attempts.get(job.row, 0)))
        ended = _write_report(reports, out)
        done = sum(r["status"] in ("done", "skipped") for r in ended)
        raise Interrupted(f"{done} of {len(ended)} rows are done; run the same command again to train the rest "
                          "(rows done are skipped).")
    return _write_report(reports, out)


class CtrlC:
    """Ctrl-C (SIGINT) noted while the batch runs, not raised: a KeyboardInterrupt raised inside Ray's own
    code can leave it unable to stop its workers (seen: the command hung). The batch looks at `pressed`
    between waits and stops there."""

    def __enter__(self) -> CtrlC:
        self.pressed = False
        self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.pressed = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _outcome(ref, job: Job, actor, pool: TrainerPool, attempt: int) -> dict | None:
    """The job's report, or None when its worker died and it may be tried again (the worker is replaced)."""
    try:
        report = ray.get(ref)
    except RayActorError as error:
        pool.replace(actor)
        if attempt <= RETRIES:
            return None
        report = _row_report(job, "failed", error=f"its worker died {attempt} times ({type(error).__name__})")
    except RayTaskError as error:  # an unexpected error in the job itself: reported, the batch goes on
        report = _row_report(job, "failed", error=f"{type(error.cause).__name__}: {error.cause}")
    report["attempts"] = attempt
    return report


def _row_report(job: Job, status: str, **fields) -> dict:
    """The report of a row the driver decides on (skipped, failed with its worker, interrupted)."""
    return {"row": job.row, "kind": job.kind, "name": job.name, "status": status, **fields}


def _write_report(reports: dict[int, dict], out: Path) -> list[dict]:
    ordered = [reports[row] for row in sorted(reports)]
    with atomic_write(out / REPORT) as tmp:
        Path(tmp).write_text(json.dumps(ordered, indent=1) + "\n")
    return ordered


def skip_done(jobs: list[Job], out: Path) -> tuple[list[Job], list[dict]]:
    """(the rows still to run, the reports of those already done), checked in this process."""
    left, skipped = [], []
    for job in jobs:
        if already_done(job, out):
            skipped.append(_row_report(job, "skipped", attempts=0))
        else:
            left.append(job)
    return left, skipped


class _Progress:
    """One line over the jobs: how many have ended (skipped and failed among them), how many run."""

    def __init__(self, total: int, ended: list[dict]):
        self.total, self.t0 = total, time.time()
        self.ended = {status: sum(r["status"] == status for r in ended) for status in ("done", "skipped", "failed")}

    def started(self, todo: int, workers: int) -> None:
        print(f"batch: {todo} of {self.total} jobs to train on {workers} workers ({self.ended['skipped']} done "
              "before)", file=sys.stderr, flush=True)

    def finished(self, report: dict, running: int) -> None:
        self.ended[report["status"]] += 1
        count = sum(self.ended.values())
        print(f"\rbatch: {count}/{self.total} jobs ended ({self.ended['skipped']} skipped, {self.ended['failed']} "
              f"failed), {running} running, {time.time() - self.t0:.0f} s", end="\n" if count == self.total else "",
              file=sys.stderr, flush=True)
