// What the trainer nodes leave in view after a run. A trainer shows its state as the node's progress
// text: what it prepares, the step and loss, and at the end its summary (eval loss, validation files,
// best step) or, after Cancel, where it stopped and what is kept. The frontend forgets that text when a
// run ends (frontend 1.58), when the workflow's tab is switched, or when a run is loaded from the queue
// history. The summary is also in the node's outputs ("text"), which the frontend keeps, so it is shown
// again from there; the last text of a cancelled run (what Cancel kept) is shown again once it has ended.
// And once a run that trained ends, the model lists are refreshed, so a checkpoint it wrote can be
// chosen in resume_from, or its style in continue_from, without restarting anything.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";

const TRAINERS = new Set(["InST_TrainStyle", "StyleForge_Train", "StyleForge_TrainMulti"]);

function isTrainer(nodeId) {
  return TRAINERS.has(app.graph?.getNodeById(Number(nodeId))?.comfyClass);
}

function show(nodeId, text) {
  api.dispatchCustomEvent("progress_text", { nodeId: String(nodeId), text });
}

function showSummaries(outputs) {
  for (const [nodeId, output] of Object.entries(outputs ?? {})) {
    if (isTrainer(nodeId) && output?.text?.length) show(nodeId, output.text[0]);
  }
}

let trained = false; // whether the running prompt reached a trainer node
let lastTexts = {}; // node id -> the last text a trainer showed in the running prompt

app.registerExtension({
  name: "inst_styleforge.TrainingResults",
  onNodeOutputsUpdated: showSummaries,
  setup() {
    api.addEventListener("executing", ({ detail }) => {
      trained ||= detail != null && isTrainer(typeof detail === "object" ? detail.node : detail);
    });
    api.addEventListener("progress_text", ({ detail }) => {
      if (isTrainer(detail?.nodeId)) lastTexts[detail.nodeId] = detail.text;
    });
    const ended = (showAgain) => () => {
      const texts = lastTexts;
      if (trained) app.refreshComboInNodes();
      trained = false;
      lastTexts = {};
      setTimeout(() => showAgain(texts), 0); // after the frontend's own end-of-run handlers clear the texts
    };
    api.addEventListener("execution_success", ended(() => showSummaries(app.nodeOutputs)));
    api.addEventListener("execution_interrupted", ended((texts) => {
      for (const [nodeId, text] of Object.entries(texts)) show(nodeId, text); // "Cancelled after step ..."
    }));
    api.addEventListener("execution_error", ended(() => {})); // the error dialog says what happened
  },
});
