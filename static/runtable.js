// The table of every run: tick to overlay (up to 8), sort by a column, rename, delete (confirmed),
// pause / resume / stop, set the learning rate while it trains, export. Rows are built when the set
// or order of runs changes; live numbers are updated in place.

import { MAX_RUNS, runColor } from "./palette.js";
import { META, inputBounds } from "./meta.js";
import { buildOnce, el, formatInt, formatNum, formatSetting, setText } from "./util.js";

const { active: ACTIVE, actions: CAN, explained: SAYS_WHY } = META; // the server's status sets (bnscope.events)

// column -> [heading, sort value (null: not sortable)]
const COLUMNS = {
  show: ["Show", null],
  id: ["#", (r) => r.id],
  name: ["Name", (r) => r.name.toLowerCase()],
  status: ["Status", (r) => r.status],
  step: ["Step", (r) => r.step],
  train: ["Train loss", (r, at) => at(r.id)?.train ?? Infinity],
  dev: ["Dev loss", (r, at) => at(r.id)?.dev ?? Infinity],
  speed: ["Steps/s", (r) => r.steps_per_s],
  gain: ["Gain", (r) => r.config?.gain ?? -1],
  batchnorm: ["BN", (r) => String(r.config?.batchnorm)],
  net: ["Layers × width", (r) => (r.config ? r.config.n_layers * 1e5 + r.config.n_hidden : -1)],
  lr: ["lr", (r) => r.lr ?? -1],
  actions: ["Actions", null],
};

/** Where a run follows the lecture's notebook instead of bnscope's own defaults, in words (null: nowhere). */
function notebookMode(config) {
  const parts = [];
  if (config?.batch_order === "lecture") parts.push("the lecture's batch order");
  if (config?.bn_variance === "unbiased") parts.push("BatchNorm with x.var()");
  return parts.length ? `notebook mode: ${parts.join(", ")}` : null;
}

export class RunTable {
  /** actions: {toggle(id), control(id, action), rename(id, name), remove(run), setLr(id, lr)} */
  constructor(table, actions) {
    this.table = table;
    this.actions = actions;
    this.sort = { column: "id", descending: false };
  }

  /** runs: RunOut[]; slots: Map id -> overlay slot; at(id) -> {train, dev} at the shown step or null;
   * live(id): whether its numbers are current (its stream is up). */
  render(runs, slots, at, live) {
    const [, value] = COLUMNS[this.sort.column];
    const sorted = [...runs].sort((a, b) => {
      const [x, y] = [value(a, at), value(b, at)];
      return (x < y ? -1 : x > y ? 1 : a.id - b.id) * (this.sort.descending ? -1 : 1);
    });
    const structure = JSON.stringify([sorted.map((r) => r.id), [...slots], this.sort, slots.size >= MAX_RUNS]);
    buildOnce(this.table, structure, () => [this.head(), el("tbody", {}, ...sorted.map((run) => this.row(run, slots)))]);
    this.table.querySelectorAll("tbody tr").forEach((tr, i) => this.update(tr, sorted[i], at(sorted[i].id), live(sorted[i].id)));
  }

  head() {
    const cells = Object.entries(COLUMNS).map(([column, [heading, sortable]]) => {
      if (!sortable) return el("th", { scope: "col", textContent: heading });
      const current = this.sort.column === column;
      const button = el("button", { type: "button", className: "sort", textContent: heading + (current ? (this.sort.descending ? " ↓" : " ↑") : "") });
      button.addEventListener("click", () => {
        this.sort = { column, descending: current ? !this.sort.descending : false };
        this.table.dataset.structure = ""; // rebuild in the new order at the next draw
        this.actions.redraw();
      });
      const th = el("th", { scope: "col" }, button);
      if (current) th.setAttribute("aria-sort", this.sort.descending ? "descending" : "ascending");
      return th;
    });
    return el("thead", {}, el("tr", {}, ...cells));
  }

  row(run, slots) {
    const { actions } = this;
    const slot = slots.get(run.id);
    const show = el("input", { type: "checkbox", checked: slot !== undefined, "aria-label": `overlay run #${run.id}` });
    show.disabled = slot === undefined && slots.size >= MAX_RUNS;
    if (show.disabled) show.title = `at most ${MAX_RUNS} runs are overlaid`;
    show.addEventListener("change", () => actions.toggle(run.id));
    const chip = slot === undefined ? null : el("span", { className: "slot-chip", textContent: String(slot + 1), style: `background:${runColor(slot)}` });

    const name = el("span", { className: "run-name" });
    const rename = el("button", { type: "button", className: "icon", textContent: "✎", title: "rename", "aria-label": `rename run #${run.id}` });
    rename.addEventListener("click", () => this.editName(name.parentElement, run));

    const lr = el("input", { type: "number", className: "lr-input", ...inputBounds("lr"), step: "any", "aria-label": `learning rate of run #${run.id}` });
    lr.addEventListener("change", () => lr.reportValidity() && actions.setLr(run.id, Number(lr.value)));

    const button = (action, label, className = "") => {
      const b = el("button", { type: "button", className, textContent: label, dataset: { action }, "aria-label": `${label} run #${run.id}` });
      b.addEventListener("click", () => actions.control(run.id, action));
      return b;
    };
    const remove = el("button", { type: "button", className: "danger", textContent: "Delete", "aria-label": `delete run #${run.id}` });
    remove.addEventListener("click", () => actions.remove(run));
    const exportLink = (format) => el("a", { href: `/api/runs/${run.id}/export?format=${format}`, download: `bnscope-run-${run.id}.${format}`,
      textContent: format.toUpperCase(), className: "export", "aria-label": `download run #${run.id} as ${format.toUpperCase()}` });

    const mode = notebookMode(run.config);
    const cells = {
      show: [show, chip], id: [`#${run.id}`],
      name: [el("div", { className: "name-cell" }, name, rename), ...(mode ? [el("div", { className: "run-message", textContent: mode })] : [])],
      status: [el("span", { className: "status" }), el("div", { className: "run-message" })],
      step: [], train: [], dev: [], speed: [],
      gain: [run.config ? formatSetting(run.config.gain) : "–"],
      batchnorm: [run.config ? (run.config.batchnorm ? "on" : "off") : "–"],
      net: [run.config ? `${run.config.n_layers} × ${run.config.n_hidden}` : "watched"],
      lr: [lr, el("span", { className: "lr-text" })],
      actions: [el("div", { className: "row-actions" }, button("pause", "Pause"), button("resume", "Resume"), button("stop", "Stop"),
        exportLink("csv"), exportLink("json"), remove)],
    };
    return el("tr", { dataset: { run: String(run.id) } },
      ...Object.entries(cells).map(([column, children]) => el("td", { className: `col-${column}` }, ...children)));
  }

  update(tr, run, at, live) {
    const cell = (column) => tr.querySelector(`.col-${column}`);
    const name = cell("name").querySelector(".run-name"); // absent while it is being edited
    if (name) setText(name, run.name);
    const status = cell("status").firstChild;
    status.className = `status status-${run.status}`;
    setText(status, live || !ACTIVE.includes(run.status) ? run.status : `${run.status}?`);
    status.title = live || !ACTIVE.includes(run.status) ? run.status : "last known: the live stream is down";
    setText(cell("status").lastChild, SAYS_WHY.includes(run.status) ? run.message : "");
    setText(cell("step"), run.steps ? `${formatInt(run.step)} / ${formatInt(run.steps)}` : formatInt(run.step));
    setText(cell("train"), at ? formatNum(at.train, 4) : "–");
    setText(cell("dev"), at ? formatNum(at.dev, 4) : "–");
    setText(cell("speed"), run.status === "running" && live && run.steps_per_s ? formatInt(run.steps_per_s) : "–");
    const lr = cell("lr").querySelector("input");
    const canSetLr = CAN.lr.includes(run.status) && run.source === "trainer";
    lr.hidden = !canSetLr;
    if (document.activeElement !== lr && run.lr != null) lr.value = Number(run.lr.toPrecision(6));
    setText(cell("lr").querySelector(".lr-text"), canSetLr ? "" : formatNum(run.lr));
    for (const b of cell("actions").querySelectorAll("button[data-action]")) b.disabled = !CAN[b.dataset.action].includes(run.status);
  }

  editName(container, run) {
    const input = el("input", { type: "text", value: run.name, maxLength: META.name_max_length, "aria-label": `new name of run #${run.id}` });
    const original = [...container.childNodes];
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      container.replaceChildren(...original);
      if (save && input.value.trim() && input.value !== run.name) this.actions.rename(run.id, input.value.trim());
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") finish(true);
      if (e.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    container.replaceChildren(input);
    input.focus();
    input.select();
  }
}
