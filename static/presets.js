// The lecture's experiments (GET /api/presets): each one click, a sweep or a run, opened at once.

import { api } from "./api.js";
import { el } from "./util.js";

export async function showPresets(container, notify) {
  let presets;
  try {
    presets = await api.get("/api/presets");
  } catch (err) {
    container.replaceChildren(el("p", { className: "muted small", textContent: `No experiments: ${err.message}` }));
    return;
  }
  container.replaceChildren(...presets.map((preset) => {
    const start = el("button", { type: "button", textContent: "Start", title: `start: ${preset.name}` });
    start.addEventListener("click", async () => {
      start.disabled = true;
      try {
        const made = await api.post(preset.kind === "sweep" ? "/api/sweeps" : "/api/runs", preset.body);
        location.assign(preset.kind === "sweep" ? `/?sweep=${made.id}` : `/?runs=${made.id}`);
      } catch (err) {
        notify(err.message, "error");
        start.disabled = false;
      }
    });
    return el("div", { className: "preset", dataset: { preset: preset.id } },
      el("strong", { textContent: preset.name }), el("p", { textContent: preset.text }), start);
  }));
}
