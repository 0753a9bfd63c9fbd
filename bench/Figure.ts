/*
 * What a benchmark reports: one figure per question Lockstep has to answer, each made of rows
 * measured in the same run, so that ratios compare like with like on the same noisy machine.
 */

/**
 * One measured value. A row with a goal says whether this run met it; a row without is context.
 * A row measured over repetitions carries their min and median; its value (and its goal's
 * verdict) is the median.
 */
export interface Row {
  readonly name: string
  /** The value in `unit`; `undefined` when it could not be measured. */
  readonly value: number | undefined
  readonly unit: string
  /** The smallest and the median of the repetitions, and how many there were. */
  readonly min?: number
  readonly median?: number
  readonly repetitions?: number
  /** The goal as a sentence, e.g. `≤ 1.05`; absent for context rows. */
  readonly goal?: string
  /** Whether the goal was met; absent for context rows. */
  readonly met?: boolean
  /** `met` in words, for readers of the JSON. */
  readonly verdict?: "met" | "missed"
}

/** A benchmark figure: its rows and what explains them. */
export interface Figure {
  readonly figure: number
  readonly title: string
  /** How it was measured (clock, repetitions, model), for the reader of the table. */
  readonly method: string
  readonly rows: ReadonlyArray<Row>
  /** Why a goal was missed, or anything else the numbers alone do not say. */
  readonly notes: ReadonlyArray<string>
}

/** A row with a goal: `met` is computed here so that the goal and the check stay side by side. */
export const goalRow = (
  name: string,
  value: number | undefined,
  unit: string,
  goal: { readonly text: string; readonly holds: (value: number) => boolean }
): Row => {
  const met = value !== undefined && goal.holds(value)
  return { name, value, unit, goal: goal.text, met, verdict: met ? "met" : "missed" }
}

/**
 * A row measured over repetitions: its value is their median, judged against the goal if there
 * is one, with the min beside it.
 */
export const sampledRow = (
  name: string,
  samples: ReadonlyArray<number>,
  unit: string,
  goal?: { readonly text: string; readonly holds: (value: number) => boolean }
): Row => {
  const value = samples.length === 0 ? undefined : median(samples)
  const stats = { min: Math.min(...samples), median: value ?? Number.NaN, repetitions: samples.length }
  return goal === undefined
    ? { ...contextRow(name, value, unit), ...stats }
    : { ...goalRow(name, value, unit, goal), ...stats }
}

/** A row without a goal. */
export const contextRow = (name: string, value: number | undefined, unit: string): Row => ({ name, value, unit })

/** Goal: at most `limit`. */
export const atMost = (limit: number, text = `≤ ${limit}`) => ({ text, holds: (v: number) => v <= limit })

/** Goal: at least `limit`. */
export const atLeast = (limit: number, text = `≥ ${limit}`) => ({ text, holds: (v: number) => v >= limit })

/** Whether every goal of a figure was met (a figure without goals meets them vacuously). */
export const figureMet = (figure: Figure): boolean => figure.rows.every((row) => row.met !== false)

/** The median of some samples (the mean of the middle two for an even count). */
export const median = (samples: ReadonlyArray<number>): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const upper = sorted[mid] ?? Number.NaN
  return sorted.length % 2 === 1 ? upper : ((sorted[mid - 1] ?? upper) + upper) / 2
}

/** The spread of samples around their median, as `min–max`, for the notes. */
export const spread = (samples: ReadonlyArray<number>, digits: number): string =>
  `${Math.min(...samples).toFixed(digits)}–${Math.max(...samples).toFixed(digits)}`

const formatValue = (value: number | undefined): string => {
  if (value === undefined || !Number.isFinite(value)) return "n/a"
  const magnitude = Math.abs(value)
  if (magnitude >= 1000) return value.toFixed(0)
  if (magnitude >= 100) return value.toFixed(1)
  if (magnitude >= 10) return value.toFixed(2)
  return value.toFixed(3)
}

const pad = (text: string, width: number): string => text + " ".repeat(Math.max(0, width - [...text].length))

/** The table: one line per row, grouped by figure, with the notes under each figure. */
export const formatTable = (figures: ReadonlyArray<Figure>): string => {
  const lines: Array<Array<string>> = []
  for (const f of figures) {
    for (const row of f.rows) {
      const met = row.met === undefined ? "" : row.met ? "yes" : "NO"
      const value =
        row.min === undefined || row.repetitions === undefined || row.repetitions < 2
          ? formatValue(row.value)
          : `${formatValue(row.min)} / ${formatValue(row.value)}`
      lines.push([`${f.figure}`, row.name, `${value} ${row.unit}`.trim(), row.goal ?? "", met])
    }
  }
  const header = ["fig", "measure", "value (min / median)", "goal", "met?"]
  const widths = header.map((h, i) => Math.max([...h].length, ...lines.map((l) => [...(l[i] ?? "")].length)))
  const render = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => pad(c, widths[i] ?? 0))
      .join("  ")
      .trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  const out: Array<string> = [render(header), rule]
  let current = -1
  for (const [i, line] of lines.entries()) {
    const figure = Number(line[0])
    if (figure !== current && i > 0) out.push(rule)
    current = figure
    out.push(render(line))
  }
  out.push(rule)
  for (const f of figures) {
    out.push(`Figure ${f.figure}: ${f.title}. ${f.method}`)
    for (const note of f.notes) out.push(`  - ${note}`)
  }
  return out.join("\n")
}
