// Small helpers shared by the dashboard modules: DOM building (text only, never HTML) and number formats.

export const $ = (id) => document.getElementById(id);

/** A new element with properties (className, textContent, title, dataset, ...) and children.
 * Text goes in as text: user strings such as run names can never become markup. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child != null));
  return node;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export const formatInt = (n) => integer.format(n);

/** 3 significant digits, switching to exponent form for very small or large magnitudes. */
export function formatNum(x, digits = 3) {
  if (x == null || !Number.isFinite(x)) return "–";
  const magnitude = Math.abs(x);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

/** A config value as people write it: 5/3 rather than 1.6666666666666667. */
export function formatSetting(value) {
  if (typeof value === "number" && Math.abs(value - 5 / 3) < 1e-9) return "5/3";
  if (typeof value === "number" && !Number.isInteger(value)) return formatNum(value, 4);
  return String(value);
}

/** "batchnorm=false, gain=3" from a {setting: value} object. */
export const describeSettings = (settings) =>
  Object.entries(settings).map(([key, value]) => `${key}=${formatSetting(value)}`).join(", ");

/** Rebuild a container's children with build() only when `structure` (a string) changed: live numbers
 * are then updated in place, so nothing is replaced under the user's pointer mid-click. */
export function buildOnce(container, structure, build) {
  if (container.dataset.structure === structure) return false;
  container.dataset.structure = structure;
  container.replaceChildren(...build());
  return true;
}

/** Set a node's text, touching the DOM only when it changes. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
