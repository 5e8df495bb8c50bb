// Run colours: one hue per overlaid run (up to 8), each dark enough for text on white (>= 4.5:1,
// checked by the browser test), and lighter shades of it for a run's shallower layers.

const RUN_COLORS = ["#1d4ed8", "#c2410c", "#047857", "#6d28d9", "#be185d", "#0e7490", "#854d0e", "#475569"];
export const MAX_RUNS = RUN_COLORS.length;

export const runColor = (slot) => RUN_COLORS[slot % RUN_COLORS.length];

/** The run's colour mixed with white by `amount` (0..1): for faint raw lines behind a smoothed one. */
export function tint(slot, amount) {
  const hex = runColor(slot);
  const channel = (i) => Math.round(parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16) * (1 - amount) + 255 * amount);
  return `rgb(${channel(0)}, ${channel(1)}, ${channel(2)})`;
}

/** The run's colour, see-through: a band behind its line. */
export function translucent(slot, alpha) {
  const hex = runColor(slot);
  const channel = (i) => parseInt(hex.slice(1 + 2 * i, 3 + 2 * i), 16);
  return `rgba(${channel(0)}, ${channel(1)}, ${channel(2)}, ${alpha})`;
}

/** A run's layers share its hue, from light (first layer) to its full colour (last): depth reads at a glance. */
export const layerColor = (slot, index, count) => tint(slot, count > 1 ? 0.6 * (1 - index / (count - 1)) : 0);

/** Runs are also told apart without colour: a dash pattern per slot. */
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot", "solid", "dash"];
export const runDash = (slot) => DASHES[slot % DASHES.length];
