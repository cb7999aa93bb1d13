import { useCallback, useEffect, useRef, useState } from "react";
import type { Series } from "./components/charts";
import type { MetricPoint } from "./types";

/** Puts `p` into `points` (kept in step order), replacing the point of the same step. */
export function insert(points: MetricPoint[], p: MetricPoint): void {
  const last = points.length - 1;
  // The stream sends steps in order: the common case is an append.
  if (last < 0 || points[last].step < p.step) {
    points.push(p);
    return;
  }
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].step < p.step) lo = mid + 1;
    else hi = mid;
  }
  if (points[lo]?.step === p.step) points[lo] = p;
  else points.splice(lo, 0, p);
}

export interface LiveCurve {
  /** The loss curves as the chart draws them. */
  series: Series[];
  /** How many steps the curve holds. */
  count: number;
  latest: MetricPoint | null;
  /** The last validation loss (validation runs at checkpoints, not every step). */
  lastValidationLoss: number | null;
}

/** Points the chart draws per series at most: each bucket of a longer curve is drawn as its
 * lowest and highest point, so spikes stay visible and the chart's work stays flat however
 * long the history grows (10,000 points redraw as fast as 1,000). */
const DRAWN = 1000;

type XY = { x: number; y: number };

export function thin(points: XY[], max = DRAWN): XY[] {
  if (points.length <= max) return points;
  const size = Math.ceil(points.length / Math.floor(max / 2));
  const out: XY[] = [];
  for (let i = 0; i < points.length; i += size) {
    let lo = points[i];
    let hi = points[i];
    for (let j = i + 1; j < Math.min(i + size, points.length); j++) {
      if (points[j].y < lo.y) lo = points[j];
      if (points[j].y > hi.y) hi = points[j];
    }
    if (lo === hi) out.push(lo);
    else if (lo.x < hi.x) out.push(lo, hi);
    else out.push(hi, lo);
  }
  // The live tip is always drawn where it is.
  const last = points[points.length - 1];
  if (out[out.length - 1] !== last) out.push(last);
  return out;
}

function draw(points: MetricPoint[]): LiveCurve {
  const training: XY[] = new Array(points.length);
  const validation: XY[] = [];
  for (let i = 0; i < points.length; i++) {
    const p = points[i];
    training[i] = { x: p.step, y: p.trainingLoss };
    if (p.validationLoss !== null && p.validationLoss !== undefined) validation.push({ x: p.step, y: p.validationLoss });
  }
  return {
    series: [
      { label: "training loss", color: "#4f46e5", points: thin(training) },
      { label: "validation loss", color: "#f59e0b", points: thin(validation) },
    ],
    count: points.length,
    latest: points.length ? points[points.length - 1] : null,
    lastValidationLoss: validation.length ? validation[validation.length - 1].y : null,
  };
}

/** A job's loss curve fed from its history and its live stream: points arriving together
 * are drawn once, on the next animation frame, so a fast stream costs one redraw per frame
 * at most. */
export function useLiveCurve(): [LiveCurve, (points: MetricPoint[]) => void] {
  const points = useRef<MetricPoint[]>([]);
  const frame = useRef(0);
  const [curve, setCurve] = useState<LiveCurve>(() => draw([]));
  const add = useCallback((incoming: MetricPoint[]) => {
    for (const p of incoming) insert(points.current, p);
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      setCurve(draw(points.current));
    });
  }, []);
  useEffect(() => () => cancelAnimationFrame(frame.current), []);
  return [curve, add];
}
