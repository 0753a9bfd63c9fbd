import type { SessionFaults } from "./FaultPlan.js"
import { checksum, invalidatePage, type Memory, pageLength } from "./Memory.js"
import { mix32 } from "./Prng.js"

/*
 * The saved-state stream of a simulated device. Opaque to everyone but simulated devices:
 * the coordinator and the stream package carry it as bytes.
 *
 *   header   24 bytes: magic "LSIM", version, page size, state size (low, high 32 bits), page count
 *   page     12 bytes: kind 1, page index, checksum of the page; then the page's bytes
 *   trailer  12 bytes: kind 2, number of page records, combined checksum of all records
 *
 * All fields are little-endian u32. A saving session sends every page once in index order
 * (the first pages, up to the pre-copy portion, during PRE_COPY), re-sends pages dirtied after
 * they were sent, and ends with the trailer in STOP_COPY. A resume applies records in order,
 * so a re-sent page overwrites the earlier copy. Checksums protect the transfer, not the
 * device: a peer's write into a stopped device is faithfully sent (or missed) like any other
 * content, which is why P2P corruption is silent, as on real hardware.
 */

const magic = 0x4d49534c
const version = 1
const pageKind = 1
const trailerKind = 2

/** Length of the stream header. */
export const headerLength = 24
/** Length of a record header (and of the trailer). */
export const recordHeaderLength = 12

const putU32 = (buf: Uint8Array, at: number, value: number): void => {
  buf[at] = value & 0xff
  buf[at + 1] = (value >>> 8) & 0xff
  buf[at + 2] = (value >>> 16) & 0xff
  buf[at + 3] = (value >>> 24) & 0xff
}

const getU32 = (buf: Uint8Array, at: number): number =>
  ((buf[at] ?? 0) | ((buf[at + 1] ?? 0) << 8) | ((buf[at + 2] ?? 0) << 16) | ((buf[at + 3] ?? 0) << 24)) >>> 0

const pageSalt = (page: number): number => mix32(page ^ 0x7a6e3d19)
const combine = (combined: number, recordChecksum: number): number => mix32(combined ^ recordChecksum)

/** The checksum of a page's record: cached in the memory until the page changes. */
const pageChecksum = (memory: Memory, page: number): number => {
  if (memory.pageSumValid[page] === 1) return memory.pageSums[page] ?? 0
  const sum = checksum(memory, page * memory.pageSize, pageLength(memory, page), pageSalt(page))
  memory.pageSums[page] = sum
  memory.pageSumValid[page] = 1
  return sum
}

/** Stream bytes of the page records of pages `[from, to)`. */
export const recordBytes = (memory: Memory, from: number, to: number): number => {
  if (to <= from) return 0
  const full = (to - from) * (recordHeaderLength + memory.pageSize)
  const last = memory.pageCount - 1
  return to > last ? full - (memory.pageSize - pageLength(memory, last)) : full
}

/** The length of a whole saving stream of `memory`: what a session opened in STOP_COPY sends. */
export const streamLength = (memory: Memory): number =>
  headerLength + recordBytes(memory, 0, memory.pageCount) + recordHeaderLength

/** Which part of the stream the staged bytes belong to, for pre-copy accounting. */
type StagedPart = "initial" | "dirty" | "final"

/** What is next in the stream. */
const none = -1
const trailer = -2

/**
 * The source side of one saving session (PRE_COPY, PRE_COPY_P2P and STOP_COPY share it).
 *
 * Memory is read in place and chunks are produced on demand: a record that fits in the
 * requested chunk is copied straight from memory; one that does not is captured whole in a
 * one-record staging buffer, so that what is sent of a page is always one consistent version
 * of it even when the page changes between reads.
 */
export class SavingSession {
  /** Bytes delivered so far. */
  offset = 0
  /** Next page of the in-order pass; pages below it have been sent (or captured). */
  private cursor = 0
  /** Pages of the pre-copy portion: `[0, initialEnd)`. */
  private readonly initialEnd: number
  private readonly staged: Uint8Array
  private stagedAt = 0
  private stagedEnd = 0
  private stagedPart: StagedPart = "initial"
  private readonly dirty: Uint8Array
  private dirtyCount = 0
  private dirtyBytes = 0
  private dirtyScan = 0
  private records = 0
  private combined = 0
  private trailerSent = false
  /** The part of the stream the record last chosen by `next` belongs to. */
  private nextPart: StagedPart = "initial"

  constructor(
    private readonly memory: Memory,
    precopyInitialBytes: number,
    private readonly faults: SessionFaults
  ) {
    this.initialEnd = Math.min(memory.pageCount, Math.ceil(precopyInitialBytes / memory.pageSize))
    this.staged = new Uint8Array(Math.max(headerLength, recordHeaderLength + memory.pageSize))
    this.dirty = new Uint8Array(memory.pageCount)
    putU32(this.staged, 0, magic)
    putU32(this.staged, 4, version)
    putU32(this.staged, 8, memory.pageSize)
    putU32(this.staged, 12, memory.bytes.length % 2 ** 32)
    putU32(this.staged, 16, Math.floor(memory.bytes.length / 2 ** 32))
    putU32(this.staged, 20, memory.pageCount)
    this.stagedEnd = headerLength
  }

  /** A page changed: if it was already sent it must be sent again. */
  markDirty(page: number): void {
    if (page >= this.cursor || this.dirty[page] === 1) return
    this.dirty[page] = 1
    this.dirtyCount++
    this.dirtyBytes += recordHeaderLength + pageLength(this.memory, page)
  }

  private stagedPending(part: StagedPart): number {
    return this.stagedPart === part ? this.stagedEnd - this.stagedAt : 0
  }

  private get dropsTrailer(): boolean {
    return this.faults.truncateAt === "trailer"
  }

  /** Bytes the stream may still deliver before a truncation fault cuts it. */
  private allowance(wanted: number): number {
    const cut = this.faults.truncateAt
    return typeof cut === "number" && cut >= 0 ? Math.min(wanted, Math.max(0, cut - this.offset)) : wanted
  }

  /**
   * `VFIO_PRECOPY_INFO_REINIT`: the whole pre-copy portion is initial data again. The pass
   * restarts at page 0 (pages already sent are sent again, so nothing dirtied is owed apart),
   * and the dirty set is emptied: dirty bytes restart from 0, relative to the new initial data.
   * A record staged half-way is finished first, so the stream stays whole.
   */
  reinitialise(): void {
    this.cursor = 0
    this.dirty.fill(0)
    this.dirtyCount = 0
    this.dirtyBytes = 0
    this.dirtyScan = 0
  }

  /** Pre-copy progress: the initial portion not read yet, and the dirtied pages to re-send. */
  precopyInfo(): { readonly initialBytes: number; readonly dirtyBytes: number } {
    const initial = this.stagedPending("initial") + recordBytes(this.memory, this.cursor, this.initialEnd)
    const dirty = this.stagedPending("dirty") + this.dirtyBytes
    const initialBytes = this.allowance(initial)
    return { initialBytes, dirtyBytes: Math.min(dirty, this.allowance(initial + dirty) - initialBytes) }
  }

  /** What STOP_COPY would still send from here. */
  stopCopyLength(): number {
    const pending = this.stagedEnd - this.stagedAt
    const pages = recordBytes(this.memory, this.cursor, this.memory.pageCount) + this.dirtyBytes
    const end = this.trailerSent || this.dropsTrailer ? 0 : recordHeaderLength
    return this.allowance(pending + pages + end)
  }

  /**
   * The next chunk of at most `maxBytes`, or `undefined` when nothing is available: in
   * pre-copy that means "no data for now", in stop-copy the end of the stream. The chunk is
   * written at the start of `into` when it fits there, else into a fresh buffer.
   */
  read(maxBytes: number, stopCopy: boolean, into?: Uint8Array): Uint8Array | undefined {
    const info = stopCopy ? undefined : this.precopyInfo()
    const available = info === undefined ? this.stopCopyLength() : info.initialBytes + info.dirtyBytes
    const n = Math.min(maxBytes, available)
    if (n <= 0) return undefined
    const out = into !== undefined && into.length >= n ? into.subarray(0, n) : new Uint8Array(n)
    let at = 0
    while (at < n) {
      if (this.stagedAt < this.stagedEnd) {
        const k = Math.min(this.stagedEnd - this.stagedAt, n - at)
        out.set(this.staged.subarray(this.stagedAt, this.stagedAt + k), at)
        this.stagedAt += k
        at += k
        continue
      }
      const next = this.next(stopCopy)
      if (next === none) break
      if (next === trailer) {
        this.stage(this.writeTrailer(this.staged, 0), "final")
        continue
      }
      const length = recordHeaderLength + pageLength(this.memory, next)
      if (n - at >= length) at = this.writePage(out, at, next)
      else this.stage(this.writePage(this.staged, 0, next), this.nextPart)
    }
    const delivered = at === n ? out : out.subarray(0, at)
    const corruptAt = this.faults.corruptAt - this.offset
    if (corruptAt >= 0 && corruptAt < at) delivered[corruptAt] = (delivered[corruptAt] ?? 0) ^ 0xa5
    this.offset += at
    return delivered
  }

  private stage(end: number, part: StagedPart): void {
    this.stagedAt = 0
    this.stagedEnd = end
    this.stagedPart = part
  }

  /** The next record to send, by the session's order. */
  private next(stopCopy: boolean): number {
    const passEnd = stopCopy ? this.memory.pageCount : this.initialEnd
    this.nextPart = stopCopy ? "final" : "initial"
    if (this.cursor < passEnd) return this.cursor++
    this.nextPart = stopCopy ? "final" : "dirty"
    if (this.dirtyCount > 0) return this.takeDirty()
    if (stopCopy && !this.trailerSent && !this.dropsTrailer) return trailer
    return none
  }

  private takeDirty(): number {
    const count = this.memory.pageCount
    for (let i = 0; i < count; i++) {
      const page = (this.dirtyScan + i) % count
      if (this.dirty[page] !== 1) continue
      this.dirty[page] = 0
      this.dirtyCount--
      this.dirtyBytes -= recordHeaderLength + pageLength(this.memory, page)
      this.dirtyScan = page + 1
      return page
    }
    return none
  }

  private writePage(buf: Uint8Array, at: number, page: number): number {
    const start = page * this.memory.pageSize
    const length = pageLength(this.memory, page)
    const sum = pageChecksum(this.memory, page)
    putU32(buf, at, pageKind)
    putU32(buf, at + 4, page)
    putU32(buf, at + 8, sum)
    buf.set(this.memory.bytes.subarray(start, start + length), at + recordHeaderLength)
    this.records++
    this.combined = combine(this.combined, sum)
    return at + recordHeaderLength + length
  }

  private writeTrailer(buf: Uint8Array, at: number): number {
    putU32(buf, at, trailerKind)
    putU32(buf, at + 4, this.records)
    putU32(buf, at + 8, this.combined)
    this.trailerSent = true
    return at + recordHeaderLength
  }
}

/**
 * The destination side of a resume session: parses the stream as it is written, in chunks of
 * any size, straight into the device's memory. The first problem is latched and reported by
 * `verdict` (RESUMING→STOP); later bytes are ignored, so bad input never costs memory.
 */
export class ResumeSession {
  private phase: "header" | "record" | "page" | "done" | "failed" = "header"
  private readonly scratch = new Uint8Array(headerLength)
  private scratchLength = 0
  private pageStart = 0
  private pageLeft = 0
  private page = 0
  private expected = 0
  private readonly received: Uint8Array
  private receivedCount = 0
  private records = 0
  private combined = 0
  private problem: string | undefined
  /**
   * The stream's intact header declares more state than the device holds. A kernel driver
   * refuses the write that brings such data (mtty: ENOMEM for a two-port stream into a
   * one-port device) rather than waiting for RESUMING → STOP. A corrupt header is still found
   * at RESUMING → STOP.
   */
  overflowed = false

  constructor(private readonly memory: Memory) {
    this.received = new Uint8Array(memory.pageCount)
  }

  /** Takes the next bytes of the stream. */
  write(data: Uint8Array): void {
    let at = 0
    while (at < data.length && this.phase !== "failed") {
      switch (this.phase) {
        case "header":
        case "record": {
          const want = this.phase === "header" ? headerLength : recordHeaderLength
          const k = Math.min(want - this.scratchLength, data.length - at)
          this.scratch.set(data.subarray(at, at + k), this.scratchLength)
          this.scratchLength += k
          at += k
          if (this.scratchLength === want) {
            this.scratchLength = 0
            this.check(this.phase === "header" ? this.acceptHeader() : this.acceptRecordHeader())
          }
          break
        }
        case "page": {
          const k = Math.min(this.pageLeft, data.length - at)
          const length = pageLength(this.memory, this.page)
          this.memory.bytes.set(data.subarray(at, at + k), this.pageStart + length - this.pageLeft)
          invalidatePage(this.memory, this.page)
          this.pageLeft -= k
          at += k
          if (this.pageLeft === 0) this.check(this.acceptPage(length))
          break
        }
        case "done":
          this.check(`${data.length - at} bytes after the end of the stream`)
          break
      }
    }
  }

  /** `undefined` if the stream was complete and valid, otherwise what is wrong with it. */
  verdict(): string | undefined {
    if (this.problem !== undefined) return this.problem
    if (this.phase !== "done") {
      return `incomplete stream: no trailer (${this.receivedCount} of ${this.memory.pageCount} pages received)`
    }
    if (this.receivedCount < this.memory.pageCount) {
      return `incomplete stream: ${this.memory.pageCount - this.receivedCount} of ${this.memory.pageCount} pages never received`
    }
    return undefined
  }

  /** Latches the first problem; parsing stops there. */
  private check(problem: string | undefined): void {
    if (problem === undefined) return
    this.problem = problem
    this.phase = "failed"
  }

  private acceptHeader(): string | undefined {
    const s = this.scratch
    const size = getU32(s, 12) + getU32(s, 16) * 2 ** 32
    if (getU32(s, 0) !== magic) return "not a simulated device's stream (bad magic)"
    if (getU32(s, 4) !== version) return `unsupported stream version ${getU32(s, 4)}`
    // An intact header (its own fields agree) of a device with more state than this one.
    const pageSize = getU32(s, 8)
    const intact =
      getU32(s, 0) === magic && getU32(s, 4) === version && pageSize > 0 && getU32(s, 20) === Math.ceil(size / pageSize)
    if (intact && size > this.memory.bytes.length) this.overflowed = true
    if (getU32(s, 8) !== this.memory.pageSize || size !== this.memory.bytes.length) {
      return `geometry mismatch: stream has ${size} bytes in ${getU32(s, 8)}-byte pages, device has ${this.memory.bytes.length} in ${this.memory.pageSize}-byte pages`
    }
    if (getU32(s, 20) !== this.memory.pageCount) return "corrupt header (page count)"
    this.phase = "record"
    return undefined
  }

  private acceptRecordHeader(): string | undefined {
    const s = this.scratch
    const kind = getU32(s, 0)
    if (kind === trailerKind) {
      if (getU32(s, 4) !== this.records || getU32(s, 8) !== this.combined) {
        return `trailer mismatch: ${getU32(s, 4)} records announced, ${this.records} received intact`
      }
      this.phase = "done"
      return undefined
    }
    if (kind !== pageKind) return `unknown record kind ${kind}`
    const page = getU32(s, 4)
    if (page >= this.memory.pageCount) return `page ${page} out of range`
    this.page = page
    this.pageStart = page * this.memory.pageSize
    this.pageLeft = pageLength(this.memory, page)
    this.expected = getU32(s, 8)
    this.phase = "page"
    return undefined
  }

  private acceptPage(length: number): string | undefined {
    const sum = pageChecksum(this.memory, this.page)
    if (sum !== this.expected) return `checksum mismatch in page ${this.page}`
    this.memory.foreign.forget(this.pageStart >>> 2, (this.pageStart + length) >>> 2)
    if (this.received[this.page] !== 1) {
      this.received[this.page] = 1
      this.receivedCount++
    }
    this.records++
    this.combined = combine(this.combined, sum)
    this.phase = "record"
    return undefined
  }
}
