"""Every measured figure the README and the templates quote, rendered from the recorded runs in
`bench/results/` (see bench/recorded.py), so a figure cannot go stale: re-running a benchmark rewrites
its record, and this module rewrites the README's figure blocks from the records.

    .devhost/venv/bin/python -m bench.figures           # rewrite the README's figure blocks
    .devhost/venv/bin/python -m bench.figures --check   # exit 1 if a block differs from its records

A README figure block sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`; the template
notes take their time-and-memory sentences from `template_cost` (devhost/make_workflows.py).
"""

from __future__ import annotations

import argparse
import re
import sys

from bench.recorded import REPO_ROOT, RESULTS, load

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def _source(*entries: dict) -> str:
    """Where a table's figures come from: the record files, their commit, machine and date."""
    files = ", ".join(f"`{(RESULTS / (e['name'] + '.json')).relative_to(REPO_ROOT)}`" for e in entries)
    runs = sorted({f"{e['machine']}, commit {e['commit']}, {e['date']}" for e in entries})
    return f"Recorded in {files} ({'; '.join(runs)})."


def _styleforge(record: dict) -> dict[tuple[int, str], dict]:
    return {(r["size"], r["runner"]): r for r in record["results"]["medians"]}


def _styleforge_row(by: dict, size: int, variant: str, label: str) -> str:
    ours, floor = by[(size, variant)], by[(size, "floor")]
    cells = [f"{ours['median_step_s']:.2f} s per step ({ours['samples_per_s']:.3g} samples/s)",
             f"{_x(floor['samples_per_s'], ours['samples_per_s'])} the floor's time per sample"]
    anchor = by.get((size, "trainlora_b1"))
    if anchor is not None:
        cells.append(f"{_x(ours['samples_per_s'], anchor['samples_per_s'])} TrainLoraNode's samples/s (batch 1)")
    cells.append(f"peak {ours['peak_rss_mb']:.0f} MiB vs the floor's {floor['peak_rss_mb']:.0f}"
                 + (f" and TrainLoraNode's {anchor['peak_rss_mb']:.0f}" if anchor is not None else ""))
    fused = by.get((size, "trainlora_b1_fused"))
    if fused is not None:
        cells.append(f"TrainLoraNode given the same fused attention: peak {fused['peak_rss_mb']:.0f} MiB")
    return f"| {label} | " + "; ".join(cells) + " |"


def _timing(results: dict) -> str:
    """How the medians were taken, for a table's label."""
    rounds = results["rounds"]
    return f"median of {results['steps']} timed steps, {rounds} round{'s' if rounds != 1 else ''}"


def _inst_row(record: dict, label: str) -> str:
    r = record["results"]
    label = f"{label} ({_timing(r)})"
    trainer, floor, anchor = r["trainer"], r["floor"], r["TrainLoraNode"]
    return (f"| {label} | {trainer['median_s']:.3g} s per step: {_x(trainer['median_s'], floor['median_s'])} its floor "
            f"({floor['median_s']:.3g} s); TrainLoraNode {anchor['median_s']:.3g} s per step; peak RSS "
            f"{trainer['peak_rss_mb']:.0f} MiB vs the floor's {floor['peak_rss_mb']:.0f} "
            f"({_x(trainer['peak_rss_mb'], floor['peak_rss_mb'])}) |")


TINY_INST, TINY_STYLEFORGE, TINY_INVERSION = ("inst_tiny_sd15_taesd_64px", "styleforge_tiny_sd15_taesd_64_256px",
                                              "inversion_tiny_sd15_64px")
FULL_INST, FULL_STYLEFORGE = "inst_full_sd15_256px", "styleforge_full_sd15_256px_floor-styleforge_batched-trainlora_b1"
BATCH = "batch_cpu_tiny_sd15_taesd_64px"


def cpu_tiny() -> str:
    inst, styleforge_record, inversion = load(TINY_INST), load(TINY_STYLEFORGE), load(TINY_INVERSION)
    styleforge, sf_timing = _styleforge(styleforge_record), _timing(styleforge_record["results"])
    inv = inversion["results"]
    extra_calls = inv["unet_calls"]["inversion"] - inv["unet_calls"]["img2img"]
    rows = [
        "| benchmark | result |", "|---|---|",
        _inst_row(inst, f"InST trainer, {inst['results']['size']} px"),
        _styleforge_row(styleforge, 64, "styleforge", f"StyleForge, 64 px (2 samples per step; {sf_timing})"),
        _styleforge_row(styleforge, 256, "styleforge", f"StyleForge, 256 px (2 samples per step; {sf_timing})"),
        f"| stochastic inversion, {inv['size']} px, {inv['steps']} steps | {extra_calls} extra UNet call over img2img "
        f"at the same steps, {_x(inv['median_s']['inversion'], inv['median_s']['img2img'])} its time |",
    ]
    return "\n".join(rows) + "\n\n" + _source(inst, styleforge_record, inversion) + "\n"


def cpu_full() -> str:
    inst, styleforge_record = load(FULL_INST), load(FULL_STYLEFORGE)
    styleforge, sf_timing = _styleforge(styleforge_record), _timing(styleforge_record["results"])
    rows = ["| benchmark | result |", "|---|---|",
            _inst_row(inst, "InST trainer, 256 px"),
            _styleforge_row(styleforge, 256, "styleforge_batched", "StyleForge, 256 px, passes one batch (auto "
                            f"below 512 px; {sf_timing})")]
    return "\n".join(rows) + "\n\n" + _source(inst, styleforge_record) + "\n"


def batch() -> str:
    record = load(BATCH)
    r = record["results"]
    rows = ["| workers | jobs per minute | a job in its worker (median) | Ray's overhead per job |",
            "|---|---|---|---|"]
    for workers, w in r["workers"].items():
        n = w["threads_per_worker"]
        threads = f" ({n} thread{'s' if n != 1 else ''}{' each' if workers != '1' else ''})"
        rows.append(f"| {workers}{threads} | {w['jobs_per_min']:.2f} | {w['job_s']:.1f} s | {w['overhead_pct']:.1f}% |")
    one, two = r["workers"]["1"], r["workers"]["2"]
    return (f"{r['jobs']} InST jobs of {r['steps']} steps at {r['resolution']} px on the tiny SD1.5, after the pool "
            "is warm:\n\n" + "\n".join(rows) + f"\n\nTwo workers train {_x(two['jobs_per_min'], one['jobs_per_min'])} "
            "the styles per minute of one on the same cores. " + _source(record) + "\n")


def template_cost(method: str) -> str:
    """The template notes' time-and-memory sentence for "inst" or "styleforge", from the full-size runs."""
    if method == "inst":
        r = load(FULL_INST)["results"]
        step, peak, what = r["trainer"]["median_s"], r["trainer"]["peak_rss_mb"], "per step"
    else:
        ours = _styleforge(load(FULL_STYLEFORGE))[(256, "styleforge_batched")]
        step, peak, what = ours["median_step_s"], ours["peak_rss_mb"], "per step (2 samples)"
    return (f"Measured on a 2-core CPU with the full-size SD1.5 (bench/results/): {step:.1f} s {what} at 256 px, "
            f"{peak / 1024:.1f} GiB peak (use a GPU for 512 px; GPU figures are not measured yet).")


SUITE = "suite_fresh_clone"


def suite() -> str:
    if not (RESULTS / f"{SUITE}.json").exists():
        return "Not recorded yet: run `python3 bench/suite_time.py`.\n"
    entry = load(SUITE)
    r = entry["results"]
    slowest = ", ".join(f"{d['test'].split('::')[-1]}{'' if d['when'] == 'call' else ' (' + d['when'] + ')'} "
                        f"{d['seconds']:.0f} s" for d in r["slowest"][:3])
    chromium = "Chromium already installed" if r["chromium_preinstalled"] else "Chromium's installation included"
    return (f"The suite ({r['tests']} tests) took {r['total_s'] / 60:.1f} minutes from a fresh clone "
            f"({r['pytest_s'] / 60:.1f} of them in pytest; installation and fixtures included, {chromium}); "
            f"its slowest tests: {slowest}. " + _source(entry) + "\n")


BLOCKS = {"cpu-tiny": cpu_tiny, "cpu-full": cpu_full, "batch": batch, "suite": suite}


def rendered(text: str) -> str:
    """`text` (the README) with every figure block rendered from the records."""
    return BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group("name")]() + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a README block is not what its records give")
    args = parser.parse_args()
    text = README.read_text()
    new = rendered(text)
    if args.check:
        sys.exit(0 if new == text else 1)
    README.write_text(new)
    print(f"figures: {len(BLOCK.findall(text))} blocks rendered into {README.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
