"""Every measured figure in README.md and the bundled templates comes from a recorded benchmark run
(bench/results/, rendered by bench/figures.py), so a stale figure cannot ship: the README's figure
blocks are what the records give, the templates' time-and-memory notes are too, and no measured
figure (seconds, memory, ratios, percentages) stands anywhere else in either."""

import json
import re

import pytest

from bench import figures
from devhost.paths import TEMPLATES

TEMPLATE_FILES = sorted(TEMPLATES.glob("*.json"))
MEASURED = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|MiB|MB|GB|GiB|x|%|min|minutes|seconds)(?![\w-])")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def test_readme_figure_blocks_are_what_the_recorded_runs_give():
    text = figures.README.read_text()
    assert {m.group("name") for m in figures.BLOCK.finditer(text)} == set(figures.BLOCKS)
    assert figures.rendered(text) == text, "run: .devhost/venv/bin/python -m bench.figures"


def test_no_measured_figure_in_the_readme_stands_outside_a_figure_block():
    prose = CODE.sub("", figures.BLOCK.sub("", figures.README.read_text()))
    assert MEASURED.findall(prose) == []


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_template_notes_quote_only_the_recorded_runs(path):
    method = "inst" if path.stem.startswith("InST") else "styleforge"
    cost = figures.template_cost(method)
    notes = [str(value) for node in json.loads(path.read_text())["nodes"] if "Note" in node["type"]
             for value in node.get("widgets_values", [])]
    assert any(cost in note for note in notes), f"no note quotes: {cost}"
    assert [MEASURED.findall(note.replace(cost, "")) for note in notes] == [[] for _ in notes]
