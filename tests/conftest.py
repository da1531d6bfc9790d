"""Test harness: the real ComfyUI, in this process and as a server on loopback.

In-process tests import `comfy.*` from the dev host (CPU flag set first) and this repository as the
package `inst_styleforge`. End-to-end tests share one server per session (`comfy_server`), started
with this package linked into its custom_nodes and always stopped, even when a test fails; the UI
tests also run on the newest frontend, in front of the same server (`ui`).
"""

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# appended, not prepended: ComfyUI's own top-level `nodes` module must win over our `nodes/` package
sys.path.append(str(REPO_ROOT))

from batch.bootstrap import keep_ray_on_loopback  # noqa: E402
from devhost import fixtures  # noqa: E402
from devhost.browser import DESKTOP_VIEWPORT, FRONTEND_READY_JS, frontend_page  # noqa: E402
from devhost.comfy_server import ComfyServer  # noqa: E402
from devhost.example_inputs import painting  # noqa: E402
from devhost.frontend_proxy import FrontendProxy  # noqa: E402
from devhost.inprocess import import_comfy, import_package  # noqa: E402
from devhost.paths import BASE_DIR, DEVHOST, NEWEST_FRONTEND  # noqa: E402

import_comfy()
keep_ray_on_loopback()  # before any test module imports ray: the tests' Ray keeps to 127.0.0.1, as the command's


@pytest.fixture(scope="session")
def pkg():
    """This package as ComfyUI imports it."""
    return import_package()


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The tiny fixtures, built once (cached by content hash) and linked into the dev host's models."""
    return fixtures.install_all()


# The session's server keeps up to this many node results (ComfyUI's --cache-lru) instead of only the
# last prompt's, so the three families' checkpoints load once each rather than at every switch, and the
# templates the pinned frontend ran are still cached when the newest frontend runs them.
SERVER_CACHED_RESULTS = 128


@pytest.fixture(scope="session")
def comfy_server(tiny_models):
    server = ComfyServer(DEVHOST / "logs" / "server-tests.log",
                         extra_args=("--cache-lru", str(SERVER_CACHED_RESULTS)))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def object_info(comfy_server) -> dict:
    """The server's node definitions, which devhost.ui_workflow converts UI workflows with."""
    return comfy_server.get("/object_info")


@contextlib.contextmanager
def _frontend_page(server: ComfyServer | FrontendProxy, log_name: str):
    """Headless Chromium showing `server`'s frontend at a desktop size with its first graph loaded (the
    tutorial marked done in the user's settings, or the frontend would open its template browser on load)."""
    settings = BASE_DIR / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(settings.read_text()) if settings.exists() else {}
    settings.write_text(json.dumps(dict(saved, **{"Comfy.TutorialCompleted": True}), indent=2))
    with frontend_page(server.url, DEVHOST / "logs" / log_name, DESKTOP_VIEWPORT,
                       ready_js=f"{FRONTEND_READY_JS} && app.graph.nodes.length > 0") as browser:
        yield browser


@pytest.fixture(scope="module")
def frontend(comfy_server):
    """A headless Chromium on the session's server (the pinned frontend) for the module's tests. Stopped
    after the module: an open frontend takes about a fifth of a core all along (it draws every progress
    message the server broadcasts), which the tests after it would pay for."""
    with _frontend_page(comfy_server, "chromium-tests.log") as browser:
        yield browser


@dataclass
class UI:
    """A frontend as a user has it: `page` shows it, and what it queues runs on `server` (for the
    newest frontend, through the proxy in front of it)."""

    frontend: str  # "pinned" (the version requirements-cpu.txt installs) or "newest"
    server: ComfyServer
    page: object  # devhost.browser.HeadlessChromium


@pytest.fixture(scope="module", params=["pinned", "newest"])
def ui(request, comfy_server):
    """The UI tests' frontend, each in turn, both in front of the session's server: the pinned one, which
    the server serves itself, and the newest (devhost/install.sh puts it beside the pinned one), served
    by a reverse proxy that passes everything else to the server (devhost/frontend_proxy.py). One
    server, so what a test ran on the pinned frontend comes from the cache on the newest."""
    if request.param == "pinned":
        with _frontend_page(comfy_server, "chromium-tests.log") as page:
            yield UI("pinned", comfy_server, page)
        return
    with FrontendProxy(comfy_server.url, NEWEST_FRONTEND) as proxy, \
            _frontend_page(proxy, "chromium-newest-frontend.log") as page:
        yield UI("newest", comfy_server, page)


@pytest.fixture(scope="session")
def painting_file(comfy_server) -> str:
    """A generated painting in the server's input folder, by the name a LoadImage node takes."""
    path = BASE_DIR / "input" / "tests_painting.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    painting(7).save(path)
    return path.name


def _load_checkpoint(path: Path) -> tuple:
    """(MODEL, CLIP, VAE) by ComfyUI's own checkpoint loader, under inference mode as the server's
    executor loads them (their weights are inference tensors)."""
    import comfy.sd
    import torch

    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return model, clip, vae


@pytest.fixture(scope="session")
def sd15(tiny_models):
    """The tiny SD1.5 (TAESD), in-process."""
    return _load_checkpoint(tiny_models["tiny_sd15_taesd"])


@pytest.fixture
def fresh_sd15(tiny_models):
    """The tiny SD1.5 loaded anew, for a test that changes the models (the session's stay as loaded)."""
    return _load_checkpoint(tiny_models["tiny_sd15_taesd"])


@pytest.fixture(scope="session")
def sd2_v(tiny_models):
    """The tiny SD2 768-v (v-prediction), in-process."""
    return _load_checkpoint(tiny_models["tiny_sd2_768v"])


@pytest.fixture(scope="session")
def sdxl(tiny_models):
    """The tiny SDXL-family model (Segmind Vega layout, CLIP-L + CLIP-G), in-process."""
    return _load_checkpoint(tiny_models["tiny_sdxl_vega"])


@pytest.fixture(scope="session")
def sd35(tiny_models):
    """The tiny SD3.5 Medium (MMDiT-X, flow matching, CLIP-L + CLIP-G, no T5), in-process."""
    return _load_checkpoint(tiny_models["tiny_sd35_medium"])


@pytest.fixture(scope="session")
def clip_vision(tiny_models):
    import comfy.clip_vision
    import torch

    with torch.inference_mode():
        return comfy.clip_vision.load(str(tiny_models["tiny_clip_vision_vitl"]))


@pytest.fixture(scope="session")
def styleforge_sets(pkg):
    """StyleForge image sets for in-process runs: 3 paintings (StyleRef, or Multi's people), 3 other
    paintings (Multi's backgrounds) and 4 people (Aux), at 64 px."""
    import torch
    from images_for_tests import to_image_tensor
    from inst_styleforge.styleforge_core import datasets, training

    from devhost.example_inputs import person

    def paintings(seeds):
        return datasets.from_batch(torch.cat([to_image_tensor(painting(s, (64, 64))) for s in seeds]))

    aux = datasets.from_batch(torch.cat([to_image_tensor(person(10 + s)) for s in range(4)]))
    return training.TrainingSets(paintings(range(3)), aux, backgrounds=paintings(range(20, 23)))
