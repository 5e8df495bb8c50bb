// A run's time series over the view's step range at the view's bucket width: the server's equal
// footing (app/storage/queries.py). Complete buckets come as /history gave them; raw points (a raw /history
// of the newest steps, then each live event's `points`) are folded into their buckets as exact
// running means, each point at the first step its bucket holds, as the server places it.
// Bounded: a series holds at most the range's number of buckets.

/** One series: bucket means at their first steps, `sums` for the buckets built here from raw points. */
class BucketSeries {
  constructor(bucket) {
    this.bucket = bucket;
    this.steps = [];
    this.values = [];
    this.sums = new Map(); // bucket index -> [sum, count], only for buckets folded here
  }

  /** Index of the last point at or before `step` (-1: none). */
  indexAt(step) {
    let lo = 0;
    let hi = this.steps.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.steps[mid] <= step) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  add(step, value) {
    const index = Math.floor(step / this.bucket);
    let i = this.steps.length - 1;
    while (i >= 0 && Math.floor(this.steps[i] / this.bucket) > index) i -= 1;
    if (i >= 0 && Math.floor(this.steps[i] / this.bucket) === index) {
      const sum = this.sums.get(index);
      if (!sum) return; // a complete bucket from the server: this point is already in its mean
      sum[0] += value;
      sum[1] += 1;
      this.values[i] = sum[0] / sum[1];
      this.steps[i] = Math.min(this.steps[i], step);
    } else {
      this.steps.splice(i + 1, 0, step);
      this.values.splice(i + 1, 0, value);
      this.sums.set(index, [value, 1]);
    }
  }

  /** The plotted value at `step`: the bucket at or before it. */
  valueAt(step) {
    const i = this.indexAt(step);
    return i < 0 ? null : this.values[i];
  }
}

const EMPTY = new BucketSeries(1);

export class RunSeries {
  /** range: {start, end, bucket} as the server answered it. */
  constructor(range) {
    this.range = range;
    this.byName = new Map();
    this.version = 0; // bumped by every change: charts redraw only when it moved
  }

  get(name) {
    return this.byName.get(name) ?? EMPTY;
  }

  names() {
    return [...this.byName.keys()];
  }

  series(name) {
    let series = this.byName.get(name);
    if (!series) {
      series = new BucketSeries(this.range.bucket);
      this.byName.set(name, series);
    }
    return series;
  }

  /** A /history answer's series, keeping only complete buckets: the points before `before`. */
  loadBuckets(answerSeries, before) {
    for (const [name, { steps, values }] of Object.entries(answerSeries)) {
      const series = this.series(name);
      for (let i = 0; i < steps.length && steps[i] < before; i += 1) {
        series.steps.push(steps[i]);
        series.values.push(values[i]);
      }
    }
    this.version += 1;
  }

  /** Raw points, {name: {steps, values}} (an event's `points`, or a raw /history answer's series). */
  fold(points) {
    const { start, end } = this.range;
    for (const [name, { steps, values }] of Object.entries(points)) {
      const series = this.series(name);
      steps.forEach((step, i) => {
        if (step >= start && step < end) series.add(step, values[i]);
      });
    }
    this.version += 1;
  }
}

/** An exponential moving average over a span in steps (not points): it means the same at every
 * bucket width and for every run. Starts at the first value (no zero-start bias). span 0: the values. */
export function smooth(steps, values, span) {
  if (!span || values.length < 2) return values;
  const out = new Array(values.length);
  let average = values[0];
  out[0] = average;
  for (let i = 1; i < values.length; i += 1) {
    average += (1 - Math.exp(-(steps[i] - steps[i - 1]) / span)) * (values[i] - average);
    out[i] = average;
  }
  return out;
}
