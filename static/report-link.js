// The page's "Download report" button: the shown runs (the address's ?runs=), the shown step (the scrubber)
// and the loss chart's zoomed step range, if any, as GET /api/report (an attachment: the page stays).
const button = document.getElementById("btn-report");

function reportUrl() {
  const runs = new URLSearchParams(location.search).get("runs");
  if (!runs) return null;
  const query = new URLSearchParams({ runs });
  const scrubber = document.getElementById("step-scrubber");
  if (scrubber && Number(scrubber.max) > 0) query.set("step", scrubber.value);
  const xaxis = document.querySelector("#panel-loss .chart")?.layout?.xaxis;
  if (xaxis && xaxis.autorange === false && Array.isArray(xaxis.range)) {
    query.set("start", String(Math.max(0, Math.floor(xaxis.range[0]))));
    query.set("end", String(Math.max(1, Math.ceil(xaxis.range[1]) + 1)));
  }
  return `/api/report?${query}`;
}

button.addEventListener("click", () => {
  const url = reportUrl();
  if (url) location.assign(url);
});
