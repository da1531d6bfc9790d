"""A batch manifest: one row per job, CSV or JSON (a list of objects), the same columns either way.

`kind` is `inst` (a painting -> a style, exported as an embedding) or `styleforge` (image folders ->
a LoRA; `backgrounds` makes it Multi-StyleForge). Paths are relative to ComfyUI's input folder, as in
the nodes. Every row is checked as its node would check it before anything trains; a manifest with a
bad row is refused whole, each problem named by row and field.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("inst", "styleforge")
# column -> type of every setting a row may give; absent settings take the trainer's defaults
INST_SETTINGS = {"steps": int, "learning_rate": float, "seed": int, "resolution": int}
STYLEFORGE_SETTINGS = {"steps": int, "unet_lr": float, "text_encoder_lr": float, "rank": int, "seed": int,
                       "resolution": int, "aux_weight": float, "token": str, "background_token": str}


@dataclass(frozen=True)
class Job:
    row: int  # 1-based, as a spreadsheet numbers data rows
    kind: str
    name: str  # output file name (no suffix), e.g. "monet_water_lilies"
    inputs: dict[str, str]  # inst: painting; styleforge: style_images, aux, backgrounds (paths under input/)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BadRow:
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, field '{self.field}': {self.message}"


INPUT_COLUMNS = ("painting", "style_images", "aux", "backgrounds")
COLUMNS = ("kind", "name", *INPUT_COLUMNS, *dict.fromkeys([*INST_SETTINGS, *STYLEFORGE_SETTINGS]))


class ManifestError(ValueError):
    """Everything wrong with a manifest, named at once: each unknown column and each bad row."""

    def __init__(self, path: Path, problems: list[str]):
        listed = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"--manifest: {path} has {len(problems)} problem(s); nothing was trained.{listed}")


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows as text; an empty manifest is refused. CSV as spreadsheets save it too (UTF-8 with a BOM)."""
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"--manifest: {path} is not a list of objects, one per job")
        rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
    else:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(file)]
    if not rows:
        raise ValueError(f"--manifest: {path} has no rows. Add one row per style or LoRA under the header.")
    return rows


def unknown_columns(rows: list[dict[str, str]]) -> list[str]:
    """A column the batch does not know, named with the nearest known one: a misspelled setting would
    otherwise train at its default."""
    unknown = sorted({column for row in rows for column in row} - set(COLUMNS))
    if not unknown:
        return []
    guesses = [f"'{c}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(c, COLUMNS, 1)) else "")
               for c in unknown]
    return [f"unknown column(s) {', '.join(guesses)}; the columns are {list(COLUMNS)}"]


def parse_row(number: int, row: dict[str, str], input_dir: Path) -> Job | BadRow:
    kind = row.get("kind", "").lower()
    if kind not in KINDS:
        return BadRow(number, "kind", f"is '{kind}'; use one of {list(KINDS)}")
    name = row.get("name", "")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        return BadRow(number, "name", f"'{name}' is not a plain file name")
    wanted = INPUT_COLUMNS[:1] if kind == "inst" else INPUT_COLUMNS[1:]
    inputs = {}
    for key in wanted:
        value = row.get(key, "")
        if not value:
            if key in ("painting", "style_images"):
                return BadRow(number, key, "is empty")
            continue
        target = (input_dir / value).resolve()
        if input_dir.resolve() not in target.parents:
            return BadRow(number, key, f"'{value}' is not under ComfyUI's input folder")
        if not (target.is_file() if key == "painting" else target.is_dir()):
            return BadRow(number, key, f"'{value}' does not exist under {input_dir}")
        inputs[key] = value
    types = INST_SETTINGS if kind == "inst" else STYLEFORGE_SETTINGS
    settings = {}
    for key, kind_of in types.items():
        if row.get(key, "") != "":
            try:
                settings[key] = kind_of(row[key])
            except ValueError:
                return BadRow(number, key, f"'{row[key]}' is not a {kind_of.__name__}")
    return Job(number, kind, name, inputs, settings)


def read_manifest(path: Path, input_dir: Path, check: Callable[[Job], None] = lambda job: None) -> list[Job]:
    """Every row as a job, or a ManifestError naming every problem. `check(job)` raises the InputError
    the trainer would raise for that row (the batch passes the trainers' own checks). Standard library
    only, so the command's --help can list the columns before anything else loads."""
    rows = read_rows(path)
    problems, jobs = unknown_columns(rows), []
    seen: dict[tuple[str, str], int] = {}
    for number, row in enumerate(rows, start=1):
        job = parse_row(number, row, input_dir)
        if isinstance(job, Job) and (job.kind, job.name) in seen:
            job = BadRow(number, "name", f"'{job.name}' is already the name of row {seen[job.kind, job.name]}")
        elif isinstance(job, Job):
            seen[job.kind, job.name] = number
            try:
                check(job)
            except ValueError as error:  # the trainers' InputError: the input it names is the row's field
                field = getattr(error, "input_name", "?")
                job = BadRow(number, field, str(error).removeprefix(f"Input '{field}': "))
        if isinstance(job, BadRow):
            problems.append(str(job))
        else:
            jobs.append(job)
    if problems:
        raise ManifestError(path, problems)
    return jobs
