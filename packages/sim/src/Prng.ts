/**
 * The one source of pseudo-randomness of the simulation: a counter-based generator (the
 * mulberry32 finaliser applied to a Weyl sequence). A stream's whole state is one 32-bit
 * counter, so a device or an edge keeps its stream in a number (or a slot of a typed array)
 * and draws without allocating; the same seed always gives the same stream.
 *
 * The loops over memory live here too, beside the generator: a hot loop calls only functions
 * of its own module (a call through an imported binding can be much slower under a module
 * runner such as vitest's).
 */

/** The Weyl increment (2^32 / golden ratio): successive counters visit every 32-bit value. */
export const weylStep = 0x6d2b79f5

/** Scrambles a 32-bit value into a well-mixed unsigned 32-bit value (a bijection). */
export const mix32 = (x: number): number => {
  let t = x | 0
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return (t ^ (t >>> 14)) >>> 0
}

/** FNV-1a of a string's UTF-16 code units: turns a device id into seed material. */
export const hashString = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** The starting counter of the stream named by `seed` and `salts` (a device id, an edge index). */
export const streamSeed = (seed: number, ...salts: ReadonlyArray<number | string>): number => {
  let h = mix32(seed ^ 0x5eed5eed)
  for (const salt of salts) h = mix32(h ^ (typeof salt === "string" ? hashString(salt) : mix32(salt)))
  return h
}

/**
 * Fills `words` with the stream `seed` (word i is the stream's value at counter i + 1).
 * Random access by construction: any word can be recomputed alone.
 */
export const fillWords = (words: Uint32Array, seed: number): void => {
  const base = seed | 0
  for (let i = 0; i < words.length; i++) words[i] = mix32(base + Math.imul(i + 1, weylStep))
}

/**
 * Makes `count` random writes into `words`: each flips bits of one word picked by the stream
 * at counter `counter`, and tells `touched` which word and which bits. Answers the stream's
 * next counter.
 */
export const scribbleWords = (
  words: Uint32Array,
  counter: number,
  count: number,
  touched: (word: number, flip: number) => void
): number => {
  let c = counter | 0
  if (words.length === 0) return c
  for (let i = 0; i < count; i++) {
    c = (c + weylStep) | 0
    const r = mix32(c)
    const w = r % words.length
    const flip = mix32(r ^ 0x1b873593) | 1
    words[w] = (words[w] ?? 0) ^ flip
    touched(w, flip)
  }
  return c
}
