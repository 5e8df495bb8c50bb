// Dead units: their count over time, and the lecture's |t| > 0.99 image at the shown step, a row of
// images per layer, one per run.

import { drawnSteps, missingCell, stepLabel } from "./histograms.js";
import { runColor } from "./palette.js";
import { simplePanel, unionOf } from "./panels.js";
import { el, formatInt, setText } from "./util.js";

const SATURATED = [248, 250, 252];
const DEAD_COLUMN = [220, 38, 38]; // white for the whole batch: a dead unit, drawn red to stand out
const ACTIVE = [15, 23, 42];

/** A row per example of the batch, a column per unit, white where |t| > 0.99.
 * `hexRows`: 4 units per hex digit, the first unit in the highest bit. */
function drawSaturationImage(canvas, hexRows, units) {
  const bits = hexRows.map((row) => Array.from({ length: units }, (_, u) => (parseInt(row[u >> 2], 16) >> (3 - (u & 3))) & 1));
  const dead = Array.from({ length: units }, (_, u) => bits.every((row) => row[u] === 1));
  canvas.width = units;
  canvas.height = bits.length;
  const context = canvas.getContext("2d");
  const image = context.createImageData(units, bits.length);
  bits.forEach((row, r) => row.forEach((bit, u) => {
    const [red, green, blue] = !bit ? ACTIVE : dead[u] ? DEAD_COLUMN : SATURATED;
    image.data.set([red, green, blue, 255], (r * units + u) * 4);
  }));
  context.putImageData(image, 0, 0);
}

function figure(run, entry) {
  if (!entry?.image) return el("figure", { className: "image" }, el("figcaption", { textContent: `${run.slot + 1}: ${missingCell(run)}` }));
  const canvas = el("canvas", { title: `run ${run.slot + 1} ${entry.name}: a row per example, a column per unit; white: |t| > 0.99` });
  drawSaturationImage(canvas, entry.image, entry.units);
  canvas.style.outlineColor = runColor(run.slot);
  return el("figure", { className: `image${entry.dead ? " has-dead" : ""}` }, canvas,
    el("figcaption", { textContent: `${run.slot + 1}: ${formatInt(entry.dead)} dead of ${formatInt(entry.units)}` }));
}

export function deadPanel(section, context) {
  const series = simplePanel(section, "activations", "dead", "dead units", context, { rangemode: "tozero" });
  const images = section.querySelector(".images");
  const atStep = section.querySelector(".at-step");
  let drawnFor = null;
  function draw(view) {
    series.draw(view);
    setText(atStep, stepLabel(view));
    atStep.dataset.steps = drawnSteps(view);
    const key = view.runs.map((r) => `${r.slot}:${r.id}:${r.stats?.step}:${r.behind}`).join(",");
    if (key === drawnFor) return;
    drawnFor = key;
    const withImages = view.runs.map((run) => (run.stats?.activations ?? []).filter((a) => a.image));
    images.replaceChildren(...unionOf(withImages.map((list) => list.map((a) => a.name))).map((layer) =>
      el("div", { className: "image-row" }, el("span", { className: "image-layer", textContent: layer }),
        ...view.runs.map((run, r) => figure(run, withImages[r].find((a) => a.name === layer))))));
  }
  return { section, draw };
}
