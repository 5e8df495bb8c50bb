// The rules the page follows, as the server keeps them (bnscope.api.meta, GET /api/meta): the run
// statuses, the actions each fits, RunConfig's bounds. The page's HTML has them inline: no request.

export const META = JSON.parse(document.getElementById("bnscope-meta").textContent);

/** A RunConfig field's range as a number input's min / max (an exclusive bound has none: the server says it). */
export function inputBounds(name) {
  const { ge, le } = META.config[name];
  return { ...(ge != null && { min: String(ge) }), ...(le != null && { max: String(le) }) };
}
