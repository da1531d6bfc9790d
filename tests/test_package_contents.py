"""What the ComfyUI Registry would publish: the git-tracked tree minus .comfyignore holds everything
the nodes, templates and example inputs need at run time and nothing only development uses, and the
Registry fields are filled in."""

import ast
import subprocess
from fnmatch import fnmatch

import tomllib

from devhost.paths import REPO_ROOT

DEV_ONLY = ("tests/", "devhost/", "bench/", "scripts/", "docs/", ".ci/")


def published_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    patterns = [line.strip().removeprefix("/") for line in (REPO_ROOT / ".comfyignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]  # each anchored to the root
    return [f for f in tracked
            if not any(f.startswith(p) if p.endswith("/") else fnmatch(f, p) for p in patterns)]


def test_the_package_holds_what_runs_and_nothing_only_development_uses():
    files = published_files()
    assert not [f for f in files if f.startswith(DEV_ONLY)]
    for needed in ("__init__.py", "host/__init__.py", "shipped_inputs.py", "LICENSE", "README.md", "pyproject.toml",
                   "nodes/__init__.py", "training_kit/validation.py", "example_inputs/painting.jpg",
                   "web/js/training_results.js"):
        assert needed in files, needed
    assert len([f for f in files if f.startswith("example_workflows/") and f.endswith(".json")]) == 4
    assert len([f for f in files if f.startswith("example_workflows/") and f.endswith(".jpg")]) == 4
    assert len([f for f in files if f.startswith("web/docs/") and f.endswith(".md")]) == 16  # the node help pages


def test_published_code_imports_nothing_that_is_left_out():
    for path in (f for f in published_files() if f.endswith(".py")):
        tree = ast.parse((REPO_ROOT / path).read_text())
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m.split(".")[0] in ("devhost", "tests", "bench")], path


def test_registry_fields_are_filled_in():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"].startswith(">=")
    assert comfy["Icon"].endswith("/main/docs/icon.png") and (REPO_ROOT / "docs" / "icon.png").exists()
    assert project["project"]["urls"]["Repository"].startswith("https://github.com/")
    assert (REPO_ROOT / "LICENSE").read_text().startswith("                    GNU GENERAL PUBLIC LICENSE")


# What each part of the package may import from the others: each layer only the ones below it (the
# host seam nothing of the package; the two methods not each other).
ALLOWED_IMPORTS = {
    "host": set(),
    "training_kit": {"host"},
    "inst_core": {"host", "training_kit"},
    "styleforge_core": {"host", "training_kit"},
    "batch": {"host", "training_kit", "inst_core", "styleforge_core"},
    "nodes": {"host", "training_kit", "inst_core", "styleforge_core"},
}


def _package_parts_imported(path) -> set[str]:
    """The package's top-level parts that the module at `path` (relative to the repository) imports."""
    tree = ast.parse((REPO_ROOT / path).read_text())
    folder = path.parent.parts
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = folder[:len(folder) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target[0]] if target else [alias.name for alias in node.names]
            parts.update(names)
    return parts


def test_each_layer_imports_only_the_layers_below_it():
    from pathlib import Path

    for part, allowed in ALLOWED_IMPORTS.items():
        modules = sorted((REPO_ROOT / part).rglob("*.py"))
        assert modules, part
        for module in modules:
            path = Path(module.relative_to(REPO_ROOT))
            imported = _package_parts_imported(path) & set(ALLOWED_IMPORTS) - {part}
            assert imported <= allowed, f"{path} imports {sorted(imported - allowed)}"
