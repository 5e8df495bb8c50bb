// A shared report (bnscope.report): draws the data inlined in #report-data with the inlined Plotly.js.
// A classic script, not a module: it runs from a file opened from disk, where nothing can be imported.
// The run colours are the page's (palette.js); every run is drawn at the same steps (one bucket width).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const RUN_COLORS = ["#1d4ed8", "#c2410c", "#047857", "#6d28d9", "#be185d", "#0e7490", "#854d0e", "#475569"];
  const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
  const FAMILIES = [
    ["saturation", "Saturation over time (% of |t| > 0.97)"],
    ["act_std", "Activation std over time"],
    ["grad_std", "Activation gradient std over time"],
    ["update_to_data", "Update:data ratio (log10)"],
    ["grad_to_data", "Grad:data ratio"],
    ["running_mean", "Normalisation running mean (mean over channels)"],
    ["running_var", "Normalisation running variance (mean over channels)"],
    ["dead", "Dead units"],
    ["metric", "Logged metrics"],
  ];
  const HISTOGRAM_TITLES = { activations: "Activations", activation_grads: "Activation gradients", weight_grads: "Weight gradients" };
  const several = data.runs.length > 1;
  const label = (run, what) => (several ? `#${run.id} ${what}` : what);

  /** A run's colour (several runs) or a layer's (one run), lighter for a run's shallower layers. */
  function color(slot, index, count) {
    const hex = RUN_COLORS[(several ? slot : index) % RUN_COLORS.length];
    const amount = several && count > 1 ? 0.6 * (1 - index / (count - 1)) : 0;
    const channel = (i) => Math.round(parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16) * (1 - amount) + 255 * amount);
    return `rgb(${channel(0)}, ${channel(1)}, ${channel(2)})`;
  }

  const dash = (slot) => (several ? DASHES[Math.floor(slot / RUN_COLORS.length) % DASHES.length] : "solid");
  const stepLine = data.step === null ? [] : [{ type: "line", xref: "x", yref: "paper", x0: data.step, x1: data.step,
    y0: 0, y1: 1, line: { color: "#94a3b8", width: 1, dash: "dot" } }];

  const charts = []; // every chart's box is laid out before any is drawn: Plotly sizes a chart to its box
  function chart(id, title, traces, layout) {
    if (!traces.length) return;
    const section = document.createElement("section");
    section.id = `panel-${id}`;
    const heading = document.createElement("h2");
    heading.textContent = title;
    const box = document.createElement("div");
    box.className = "chart";
    box.id = `chart-${id}`;
    section.append(heading, box);
    document.getElementById("report-charts").append(section);
    charts.push([box, traces, { margin: { l: 56, r: 12, t: 8, b: 40 }, hovermode: "closest", legend: { font: { size: 11 } }, ...layout }]);
  }

  // the loss: each run's minibatch loss (bucket means) and its dev loss
  const loss = [];
  data.runs.forEach((run, slot) => {
    const train = run.series.loss;
    const dev = run.series.dev_loss;
    const line = { color: color(slot, 0, 1), dash: dash(slot) };
    if (train) loss.push({ name: label(run, "train"), x: train.steps, y: train.values, type: "scatter", mode: "lines", line });
    if (dev) loss.push({ name: label(run, "dev"), x: dev.steps, y: dev.values, type: "scatter", mode: "markers", marker: { color: line.color } });
  });
  chart("loss", "Loss", loss, { xaxis: { title: { text: "step" } }, yaxis: { title: { text: "loss" } }, shapes: stepLine });

  // every per-layer series, a chart a family
  for (const [family, title] of FAMILIES) {
    const traces = [];
    data.runs.forEach((run, slot) => {
      const names = Object.keys(run.series).filter((name) => name.startsWith(`${family}/`));
      names.forEach((name, i) => {
        const s = run.series[name];
        traces.push({ name: label(run, name.slice(family.length + 1)), x: s.steps, y: s.values, type: "scatter",
          mode: "lines", line: { color: color(slot, i, names.length), dash: dash(slot), width: 1.5 } });
      });
    });
    chart(family, title, traces, { xaxis: { title: { text: "step" } }, shapes: stepLine });
  }

  // the histograms at the chosen step: a line a layer, as a density (the page's: runs of different ranges compare)
  for (const [kind, [group, countsKey, rangeKey]] of Object.entries(data.histogram_kinds)) {
    const title = HISTOGRAM_TITLES[kind];
    const traces = [];
    data.runs.forEach((run, slot) => {
      const layers = run.stats ? run.stats[group] : [];
      layers.forEach((layer, i) => {
        const counts = layer[countsKey];
        const [lo, hi] = layer[rangeKey];
        if (!counts || !counts.length || lo === null || hi === null) return;
        const width = (hi - lo) / counts.length || 1;
        const total = counts.reduce((a, b) => a + b, 0);
        traces.push({ name: label(run, layer.name), x: counts.map((_, b) => lo + (b + 0.5) * width),
          y: counts.map((count) => (total > 0 ? count / (total * width) : 0)),
          type: "scatter", mode: "lines", line: { color: color(slot, i, layers.length), dash: dash(slot), width: 1.5, shape: "hvh" } });
      });
    });
    chart(`hist-${kind}`, `${title} at step ${data.step === null ? "–" : data.step.toLocaleString("en")}`, traces,
      { xaxis: { title: { text: "value" } }, yaxis: { title: { text: "density" } } });
  }

  const drawn = charts.map(([box, traces, layout]) => Plotly.newPlot(box, traces, layout, { displaylogo: false, responsive: true }));
  Promise.all(drawn).then(() => { document.body.dataset.drawn = String(drawn.length); });
})();
