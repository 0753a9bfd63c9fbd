import { fillWords, mix32, weylStep } from "./Prng.js"

/**
 * The memory of one simulated device: a single buffer, cut into pages. It is the device state
 * that migration must carry; the saved stream is built from it and a resume rebuilds it, so a
 * destination can be compared with its source byte for byte.
 *
 * `words` views the same buffer (its 4-byte-aligned prefix) so that mutations and checksums
 * work a word at a time; page sizes are multiples of 4, so every page starts on a word.
 * `foreign` remembers the writes peers made while the device was halted.
 */
export interface Memory {
  readonly bytes: Uint8Array
  readonly words: Uint32Array
  readonly pageSize: number
  readonly pageCount: number
  readonly foreign: ForeignWrites
  /**
   * Cached per-page checksums of the saved stream (`pageSums[p]` is valid while
   * `pageSumValid[p]` is 1): every change to a page must clear its flag (`invalidatePage`).
   */
  readonly pageSums: Uint32Array
  readonly pageSumValid: Uint8Array
}

/** A page of `memory` changed: its cached checksum is stale. */
export const invalidatePage = (memory: Memory, page: number): void => {
  memory.pageSumValid[page] = 0
}

/**
 * The ledger of P2P writes that landed while the device was halted: word and bits flipped.
 * Every change to memory but a resume is an XOR, so memory XOR this ledger is the device's
 * *legitimate* content, what it would hold had nobody written into it while stopped. That is
 * what makes every corrupting write visible to `compare`: one landing after its page was sent
 * leaves the resumed copy behind the source's memory; one landing before is carried into the
 * copy but is not in the source's legitimate content. Empty (and free) in a correct run.
 */
export class ForeignWrites {
  private words = new Uint32Array(0)
  private flips = new Uint32Array(0)
  private length = 0

  /** How many foreign writes are remembered. */
  get size(): number {
    return this.length
  }

  record(word: number, flip: number): void {
    if (this.length === this.words.length) {
      const grown = Math.max(16, this.length * 2)
      const words = new Uint32Array(grown)
      const flips = new Uint32Array(grown)
      words.set(this.words)
      flips.set(this.flips)
      this.words = words
      this.flips = flips
    }
    this.words[this.length] = word
    this.flips[this.length] = flip
    this.length++
  }

  /** Forgets the writes into words `[from, to)`: a resume has just overwritten them. */
  forget(from: number, to: number): void {
    let kept = 0
    for (let i = 0; i < this.length; i++) {
      const word = this.words[i] ?? 0
      if (word >= from && word < to) continue
      this.words[kept] = word
      this.flips[kept] = this.flips[i] ?? 0
      kept++
    }
    this.length = kept
  }

  /** The bits flipped in each touched word, accumulated. */
  byWord(): Map<number, number> {
    const out = new Map<number, number>()
    for (let i = 0; i < this.length; i++) {
      const word = this.words[i] ?? 0
      out.set(word, (out.get(word) ?? 0) ^ (this.flips[i] ?? 0))
    }
    return out
  }
}

/** A memory of `size` bytes whose content is the stream `seed` of the generator. */
export const makeMemory = (size: number, pageSize: number, seed: number): Memory => {
  const bytes = new Uint8Array(size)
  const words = new Uint32Array(bytes.buffer, 0, size >>> 2)
  fillWords(words, seed)
  const tail = mix32((seed | 0) - weylStep)
  for (let i = words.length * 4; i < size; i++) bytes[i] = tail >>> ((i & 3) * 8)
  const pageCount = Math.ceil(size / pageSize)
  return {
    bytes,
    words,
    pageSize,
    pageCount,
    foreign: new ForeignWrites(),
    pageSums: new Uint32Array(pageCount),
    pageSumValid: new Uint8Array(pageCount)
  }
}

/** The length of page `page` (the last page of a memory may be short). */
export const pageLength = (memory: Memory, page: number): number =>
  Math.min(memory.pageSize, memory.bytes.length - page * memory.pageSize)

/**
 * A 32-bit checksum of `length` bytes of `memory` from `offset` (a multiple of 4), started
 * from `salt`. It is FNV-1a over 32-bit words: each step is a bijection of the running value,
 * so changing any single word or byte always changes the result. Words are read in host
 * order; source and destination of a simulation share a host.
 */
export const checksum = (memory: Memory, offset: number, length: number, salt: number): number => {
  const { bytes, words } = memory
  let h = (0x811c9dc5 ^ salt) >>> 0
  const firstWord = offset >>> 2
  const endWord = Math.min(words.length, (offset + length) >>> 2)
  for (let w = firstWord; w < endWord; w++) h = Math.imul(h ^ (words[w] ?? 0), 0x01000193)
  for (let i = Math.max(offset, endWord * 4); i < offset + length; i++) h = Math.imul(h ^ (bytes[i] ?? 0), 0x01000193)
  return h >>> 0
}

/** A digest of a whole memory (64 bits as 16 hex digits): equal memories have equal digests. */
export const digest = (memory: Memory): string => {
  const size = memory.bytes.length
  const a = checksum(memory, 0, size, size)
  const b = mix32(checksum(memory, 0, size, a ^ 0x9e3779b9))
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0")
}

/** How two memories compare. */
export type MemoryComparison =
  /** Same size, same page size, same bytes, and neither holds writes made into it while halted. */
  | { readonly _tag: "Identical" }
  /**
   * Same geometry, but `differingPages` pages (the first being `firstDifferingPage`) differ in
   * their bytes, or in their legitimate content (bytes without the writes peers made into a
   * halted device).
   */
  | { readonly _tag: "Different"; readonly differingPages: number; readonly firstDifferingPage: number }
  /** The memories do not even have the same size and page size. */
  | {
      readonly _tag: "GeometryMismatch"
      readonly sizes: readonly [number, number]
      readonly pageSizes: readonly [number, number]
    }

const pageDiffers = (a: Memory, b: Memory, page: number): boolean => {
  const start = page * a.pageSize
  const end = start + pageLength(a, page)
  const endWord = Math.min(a.words.length, end >>> 2)
  for (let w = start >>> 2; w < endWord; w++) if (a.words[w] !== b.words[w]) return true
  for (let i = Math.max(start, endWord * 4); i < end; i++) if (a.bytes[i] !== b.bytes[i]) return true
  return false
}

/**
 * Compares two memories page by page: their bytes, and their legitimate content (see
 * `ForeignWrites`), so that any write into a halted device shows.
 */
export const compare = (a: Memory, b: Memory): MemoryComparison => {
  if (a.bytes.length !== b.bytes.length || a.pageSize !== b.pageSize) {
    return {
      _tag: "GeometryMismatch",
      sizes: [a.bytes.length, b.bytes.length],
      pageSizes: [a.pageSize, b.pageSize]
    }
  }
  const differs = new Uint8Array(a.pageCount)
  for (let page = 0; page < a.pageCount; page++) if (pageDiffers(a, b, page)) differs[page] = 1
  if (a.foreign.size + b.foreign.size > 0) {
    const fa = a.foreign.byWord()
    const fb = b.foreign.byWord()
    for (const w of new Set([...fa.keys(), ...fb.keys()])) {
      const legitA = ((a.words[w] ?? 0) ^ (fa.get(w) ?? 0)) >>> 0
      const legitB = ((b.words[w] ?? 0) ^ (fb.get(w) ?? 0)) >>> 0
      if (legitA !== legitB) differs[Math.floor((w * 4) / a.pageSize)] = 1
    }
  }
  const differingPages = differs.reduce((n, d) => n + d, 0)
  return differingPages === 0
    ? { _tag: "Identical" }
    : { _tag: "Different", differingPages, firstDifferingPage: differs.indexOf(1) }
}
