/** A count with its noun, agreeing in number: `1 device`, `3 devices`. */
export const plural = (n: number, noun: string, nouns = `${noun}s`): string => `${n} ${n === 1 ? noun : nouns}`

/** Bytes as a short text: `545.7 KiB`. */
export const formatBytes = (bytes: number): string => {
  for (const [unit, size] of [
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10]
  ] as const) {
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`
  }
  return `${bytes} bytes`
}

/** Milliseconds as a short text: `49.1 ms`. */
export const formatMs = (ms: number): string => `${Number.isInteger(ms) ? ms : ms.toFixed(1)} ms`

/** A downtime estimate: like `formatMs`, or `unbounded` when a stop-copy length is unknown. */
export const formatEstimateMs = (ms: number): string =>
  Number.isFinite(ms) ? formatMs(Number(ms.toFixed(1))) : "unbounded"

/** States as `gpu0 RUNNING, gpu1 RUNNING`. */
export const formatStates = (states: Readonly<Record<string, string>>): string =>
  Object.entries(states)
    .map(([id, s]) => `${id} ${s}`)
    .join(", ")
