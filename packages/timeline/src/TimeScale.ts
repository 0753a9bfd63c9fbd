import { textWidth } from "./Svg.js"

/**
 * The horizontal axis: time in ms mapped to px, piecewise linear. A run is linear as long as
 * its arcs stay wide enough to see at the width available; when they would not (a pre-copy of
 * seconds around arcs of milliseconds), the longest idle stretches — time in which no device
 * does anything — are compressed to a fixed-width break, largest first, until they do.
 * Everything inside a break is still drawn, squeezed, so the picture stays continuous.
 */

/** One piece of the axis: `[t0, t1]` drawn on `[x0, x1]`. */
export interface AxisSegment {
  readonly t0: number
  readonly t1: number
  readonly x0: number
  readonly x1: number
  readonly compressed: boolean
}

/** A labelled tick of the axis. */
export interface AxisTick {
  readonly t: number
  readonly x: number
  readonly label: string
}

/** The axis of one picture. */
export interface TimeScale {
  readonly start: number
  readonly end: number
  readonly segments: ReadonlyArray<AxisSegment>
  readonly ticks: ReadonlyArray<AxisTick>
  /** Where time `t` is drawn (clamped to the axis). */
  readonly x: (t: number) => number
}

/** A horizontal stretch `[x0, x0 + w]`, px. */
export interface Stretch {
  readonly x0: number
  readonly w: number
}

/** Where `[from, to]` is drawn on `scale`, at least `min` px wide so that nothing vanishes. */
export const stretchOf = (scale: TimeScale, from: number, to: number, min = 1): Stretch => {
  const x0 = scale.x(from)
  return { x0, w: Math.max(min, scale.x(to) - x0) }
}

/** What the axis is built from. */
export interface TimeScaleSpec {
  /** Where the axis begins; tick labels count from it (`0 ms`). */
  readonly start: number
  readonly end: number
  /** Left end of the axis, px. */
  readonly x0: number
  /** Width of the axis, px. */
  readonly width: number
  /** Intervals (or instants, `[t, t]`) in which something happens: they are never compressed. */
  readonly activity: ReadonlyArray<readonly [number, number]>
  /** A typical arc duration, ms: the detail the axis tries to keep visible. */
  readonly typicalArcMs: number | undefined
  readonly compress: boolean
}

/** The width an arc of typical duration should get, px. */
const arcPx = 8
/** The width of a compressed stretch, px. */
const breakPx = 44
/** Font size of tick labels, px. */
export const tickFont = 10
/** Ticks at least this far apart, px. */
const tickPx = 80
/** Only idle stretches this many typical arcs long are compressed, so the rhythm of arcs never is. */
const idleArcs = 6
/** Real time kept on each side of a break, in typical arcs, so activity never touches a break. */
const padArcs = 1

/** 1, 2 or 5 times a power of ten, at least `raw`. */
const niceStep = (raw: number): number => {
  const power = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 5]) if (m * power >= raw) return m * power
  return 10 * power
}

const trimmed = (value: number, decimals: number): string => String(Number(value.toFixed(decimals)))

const decimalsOf = (step: number): number => Math.max(0, -Math.floor(Math.log10(step)))

/** A tick label: an offset in ms, as `750 ms`, or in seconds (`2.5 s`) once steps reach 1 s. */
export const formatTick = (ms: number, step: number): string =>
  step >= 1000 ? `${trimmed(ms / 1000, decimalsOf(step / 1000))} s` : `${trimmed(ms, Math.min(3, decimalsOf(step)))} ms`

/** A duration to three significant digits: `0.25 ms`, `23 ms`, `9.97 s`. */
export const formatDuration = (ms: number): string =>
  ms >= 1000 ? `${Number((ms / 1000).toPrecision(3))} s` : `${Number(ms.toPrecision(3))} ms`

const merged = (intervals: ReadonlyArray<readonly [number, number]>): Array<[number, number]> => {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0])
  const out: Array<[number, number]> = []
  for (const [a, b] of sorted) {
    const last = out.at(-1)
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b)
    else out.push([a, b])
  }
  return out
}

/** The idle stretches of `[start, end]`: the gaps between activity. */
const idleGaps = (start: number, end: number, activity: ReadonlyArray<readonly [number, number]>) => {
  const busy = merged(
    activity
      .map(([a, b]): [number, number] => [Math.max(start, Math.min(a, b)), Math.min(end, Math.max(a, b))])
      .filter(([a, b]) => a <= b)
  )
  const gaps: Array<[number, number]> = []
  let cursor = start
  for (const [a, b] of busy) {
    if (a > cursor) gaps.push([cursor, a])
    cursor = Math.max(cursor, b)
  }
  if (end > cursor) gaps.push([cursor, end])
  return gaps
}

const chooseBreaks = (spec: TimeScaleSpec, duration: number): Array<[number, number]> => {
  const typical = spec.typicalArcMs
  if (!spec.compress || typical === undefined || typical <= 0) return []
  const wanted = arcPx / typical
  if (spec.width / duration >= wanted) return []
  const pad = typical * padArcs
  const candidates = idleGaps(spec.start, spec.end, spec.activity)
    .filter(([a, b]) => b - a > typical * idleArcs)
    .map(([a, b]): [number, number] => [a === spec.start ? a : a + pad, b === spec.end ? b : b - pad])
    .sort((x, y) => y[1] - y[0] - (x[1] - x[0]))
  const chosen: Array<[number, number]> = []
  let linear = duration
  for (const gap of candidates) {
    const px = spec.width - chosen.length * breakPx
    if (px / linear >= wanted) break
    if ((chosen.length + 1) * breakPx > spec.width / 2) break
    // A stretch narrower than a break would gain nothing from being one.
    if ((gap[1] - gap[0]) * (px / linear) < breakPx * 1.5) break
    chosen.push(gap)
    linear -= gap[1] - gap[0]
  }
  return chosen.sort((a, b) => a[0] - b[0])
}

/** Builds the axis of a picture. */
export const makeTimeScale = (spec: TimeScaleSpec): TimeScale => {
  const start = spec.start
  const end = spec.end > start ? spec.end : start + 1
  const duration = end - start
  const breaks = chooseBreaks({ ...spec, end }, duration)
  const linear = duration - breaks.reduce((sum, [a, b]) => sum + (b - a), 0)
  const scale = (spec.width - breaks.length * breakPx) / linear
  const segments: Array<AxisSegment> = []
  let t = start
  let x = spec.x0
  const push = (t1: number, compressed: boolean) => {
    if (t1 <= t) return
    const x1 = compressed ? x + breakPx : x + (t1 - t) * scale
    segments.push({ t0: t, t1, x0: x, x1, compressed })
    t = t1
    x = x1
  }
  for (const [a, b] of breaks) {
    push(a, false)
    push(b, true)
  }
  push(end, false)

  const at = (time: number): number => {
    const clamped = Math.max(start, Math.min(end, time))
    const segment = segments.find((s) => clamped <= s.t1) ?? segments.at(-1)
    if (segment === undefined) return spec.x0
    const span = segment.t1 - segment.t0
    return span <= 0 ? segment.x0 : segment.x0 + ((clamped - segment.t0) / span) * (segment.x1 - segment.x0)
  }

  /** Tick labels never run into a break, where the axis stands for a different scale. */
  const clearOfBreaks = (tx: number, label: string): boolean => {
    const half = textWidth(label, tickFont) / 2 + 3
    return segments.every((s) => !s.compressed || tx + half < s.x0 || tx - half > s.x1)
  }
  const step = niceStep(tickPx / scale)
  const ticks: Array<AxisTick> = []
  for (const segment of segments) {
    if (segment.compressed) continue
    const first = Math.max(0, Math.ceil((segment.t0 - start) / step - 1e-9))
    for (let k = first; start + k * step <= segment.t1 + 1e-9; k++) {
      const time = start + k * step
      const tx = at(time)
      const label = formatTick(k * step, step)
      const previous = ticks.at(-1)
      if (previous !== undefined && tx - previous.x < tickPx * 0.6) continue
      if (clearOfBreaks(tx, label)) ticks.push({ t: time, x: tx, label })
    }
  }
  // A stretch between two breaks too short for a regular tick gets one of its own, finer, so every
  // piece of the axis says where it is.
  for (const segment of segments) {
    if (segment.compressed || ticks.some((t) => t.t >= segment.t0 && t.t <= segment.t1)) continue
    if (segment.x1 - segment.x0 < tickPx * 0.6) continue
    const fine = niceStep((segment.t1 - segment.t0) / 4)
    const offset = Math.round(((segment.t0 + segment.t1) / 2 - start) / fine) * fine
    const time = start + offset
    const label = formatTick(offset, fine)
    if (offset >= 0 && time >= segment.t0 && time <= segment.t1 && clearOfBreaks(at(time), label))
      ticks.push({ t: time, x: at(time), label })
  }
  ticks.sort((a, b) => a.x - b.x)
  return { start, end, segments, ticks, x: at }
}
