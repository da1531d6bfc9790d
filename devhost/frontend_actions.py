"""What the tests and the screenshot maker do in the real frontend (a HeadlessChromium page), as a user
would: open a template from the template browser, edit widgets, queue from the UI and wait for the
result, read a node's text and the layout as the page shows it. Written for the frontend's public
objects (`app`, its commands), which the pinned and the newest frontend both have."""

from __future__ import annotations

import json
import time

from .browser import HeadlessChromium
from .comfy_server import ComfyServer, PromptResult

QUEUED_TIMEOUT_S = 60  # for a queued prompt to show up on the server
RESULTS_SHOWN_S = 1.0  # after a run, for the frontend to load and show its images (and grow the nodes)


def open_from_template_browser(frontend: HeadlessChromium, name: str) -> None:
    """Comfy > Browse Templates, this package's category, then the template's card."""
    frontend.evaluate("app.extensionManager.command.execute('Comfy.BrowseTemplates')", await_promise=True)
    card = f"document.querySelector('[data-testid=\"template-workflow-{name}\"]')"
    # the category list fills in as the dialog loads: click the package's category until its cards show
    frontend.wait_for(f"!!{card} || void [...document.querySelectorAll('[role=dialog] span')].find(e => "
                  "e.textContent.trim() === 'inst_styleforge')?.click()", timeout=60)
    frontend.evaluate(f"{card}.click()")
    frontend.wait_for(f"app.graph._nodes.length > 0 && "
                  f"app.extensionManager.workflow.activeWorkflow?.filename === {json.dumps(name)}", timeout=60)


def set_widgets(frontend: HeadlessChromium, values_by_type: dict, models: dict, node_values: dict) -> None:
    """What a user would edit: pick the tiny models in the loaders, shrink sizes and steps."""
    frontend.evaluate(f"""(() => {{
        const byType = {json.dumps(values_by_type)}, models = {json.dumps(models)}, byId = {json.dumps(node_values)};
        for (const n of app.graph._nodes)
            for (const w of n.widgets || []) {{
                const wanted = {{...(byType[n.type] || {{}}), ...(byId[n.id] || {{}})}};
                if (w.name in models && typeof w.value === 'string') w.value = models[w.name];
                if (w.name in wanted) w.value = wanted[w.name];
            }}
        app.graph.setDirtyCanvas(true, true);
    }})()""")


def queue_from_ui(frontend: HeadlessChromium, server: ComfyServer) -> tuple[PromptResult, float]:
    """The frontend's Queue command; (the finished prompt's result, its execution seconds)."""
    before = set(server.get("/history"))
    frontend.evaluate("app.extensionManager.command.execute('Comfy.QueuePrompt')", await_promise=True)
    deadline = time.time() + QUEUED_TIMEOUT_S
    while not (new := (set(server.get("/history")) | set(_queued(server))) - before):
        assert time.time() < deadline, "the UI queued nothing"
        time.sleep(0.05)
    result = server.wait(new.pop())
    stamps = {kind: body["timestamp"] for kind, body in result.messages if "timestamp" in body}
    return result, (stamps["execution_success"] - stamps["execution_start"]) / 1000 if result.ok else 0.0


def _queued(server: ComfyServer) -> list[str]:
    queue = server.get("/queue")
    return [item[1] for item in queue["queue_running"] + queue["queue_pending"]]


def node_text_js(node_id: str) -> str:
    """JavaScript for the progress text a node shows (the frontend's text preview widget), or null."""
    return (f"(app.graph.getNodeById({int(node_id)})?.widgets?.find(w => w.name === '$$node-text-preview')"
            "?.value ?? null)")


def overlapping_nodes(page: HeadlessChromium) -> list[tuple[int, int]]:
    """Pairs of nodes whose boxes (title bar included) overlap on the page, as laid out now."""
    return page.evaluate("""(() => {
        const T = LiteGraph.NODE_TITLE_HEIGHT, boxes = app.graph._nodes.map(n =>
            [n.id, n.pos[0], n.pos[1] - T, n.pos[0] + n.size[0], n.pos[1] + n.size[1]]), pairs = [];
        for (const [i, a] of boxes.entries()) for (const b of boxes.slice(i + 1))
            if (a[1] < b[3] && b[1] < a[3] && a[2] < b[4] && b[2] < a[4]) pairs.push([a[0], b[0]]);
        return pairs;
    })()""")
