"""The batch path on this machine: jobs per minute with 1 worker and with 2, and what Ray adds per job
over calling the trainer directly, once the pool is warm (models loaded).

    .devhost/venv/bin/python bench/batch_bench.py [--jobs 4] [--steps 30]
    .devhost/venv/bin/python bench/batch_bench.py --device cuda --full --resolution 512 --steps 1000

Each job is an InST style (default: 64 px on the tiny SD1.5). A job's own time is measured inside its worker
(`seconds` in the report: training, saving, the embedding export); the overhead is the driver's wall
time per job minus that, so it holds the scheduling, the transfer of the job and the report, and the
skip check. On the CPU the machine's cores are split between the workers (on 2 cores, 1 worker trains
with 2 threads, 2 workers with 1 each); on a GPU (`--device cuda`, a dev host whose torch has CUDA)
the 2 workers share the one GPU (half each), to show whether a second job on the card adds throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import recorded
from common import setup

from devhost.example_inputs import painting
from devhost.paths import BASE_DIR, COMFY_DIR, REPO_ROOT

CORES = os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--full", action="store_true", help="the full-size SD1.5 fixture instead of the tiny one")
    args = parser.parse_args()
    setup()
    from batch.bootstrap import keep_ray_on_loopback

    keep_ray_on_loopback()  # as the command's local run
    import ray
    from inst_styleforge.batch import manifest, pool

    from devhost import fixtures

    for seed in range(args.jobs + 1):
        painting(seed).save(BASE_DIR / "input" / f"bench_painting_{seed}.png")
    on_gpu = args.device == "cuda"
    checkpoint = fixtures.install(fixtures.FULL_SD15 if args.full else fixtures.TINY_SD15)
    trainer_setup = pool.Setup(str(COMFY_DIR), str(REPO_ROOT), str(checkpoint),
                               str(fixtures.install(fixtures.TINY_CLIP_VISION)), str(BASE_DIR), cpu=not on_gpu)
    pool.connect(trainer_setup, num_cpus=CORES)

    def jobs(names: range, tag: str) -> list:
        return [manifest.Job(n + 1, "inst", f"{tag}_{n}", {"painting": f"bench_painting_{n % (args.jobs + 1)}.png"},
                             {"steps": args.steps, "resolution": args.resolution, "seed": n}) for n in names]

    measured = {}
    try:
        for workers in (1, 2):
            trainers = (pool.TrainerPool(trainer_setup, workers, gpus_per_worker=1 / workers) if on_gpu else
                        pool.TrainerPool(trainer_setup, workers, cpus_per_worker=CORES // workers))
            try:
                with tempfile.TemporaryDirectory() as out:
                    pool.run_batch(jobs(range(workers), "warm"), trainers, Path(out))  # models loaded
                    t0 = time.perf_counter()
                    reports = pool.run_batch(jobs(range(args.jobs), "timed"), trainers, Path(out))
                    wall = time.perf_counter() - t0
            finally:
                trainers.close()
            own = statistics.median(r["seconds"] for r in reports)
            per_job = wall * workers / args.jobs
            measured[workers] = {"jobs_per_min": 60 * args.jobs / wall, "job_s": own,
                                 "overhead_pct": 100 * (per_job - own) / own,
                                 "threads_per_worker": None if on_gpu else CORES // workers}
            print(f"{workers} worker(s): {60 * args.jobs / wall:.2f} jobs/min; a job {own:.2f} s in its worker "
                  f"(median), {per_job:.2f} s of worker time per job in the batch: overhead "
                  f"{measured[workers]['overhead_pct']:.1f}%")
    finally:
        ray.shutdown()
    recorded.record(f"batch_{args.device}_{checkpoint.stem}_{args.resolution}px",
                    {"jobs": args.jobs, "steps": args.steps, "resolution": args.resolution, "workers": measured})


if __name__ == "__main__":
    main()
