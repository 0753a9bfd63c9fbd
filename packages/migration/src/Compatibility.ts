import type { Device } from "@lockstep/device"
import { Effect } from "effect"

/**
 * The compatibility data of a backend: an opaque blob per device (at most `MaxCompatBytes`)
 * that the source puts in its manifest, and the rule by which the destination judges it against
 * its own device's blob. A simulated backend would describe its state size and page size; a
 * real one its vendor, device and migration data version.
 */
export interface Compatibility {
  /** The blob describing a device, as both sides compute it. */
  readonly describe: (device: Device) => Effect.Effect<Uint8Array>
  /** `undefined` if the offered blob fits the local one, else why not (a sentence). */
  readonly check: (offered: Uint8Array, local: Uint8Array) => string | undefined
}

const utf8 = new TextDecoder("utf-8", { fatal: false })

/** A blob as text if it looks like text, else hex; at most 120 characters. */
export const showBlob = (blob: Uint8Array): string => {
  const printable = blob.every((b) => b >= 0x20 && b < 0x7f)
  const text = printable ? utf8.decode(blob) : Buffer.from(blob).toString("hex")
  const shown = text.length > 120 ? `${text.slice(0, 117)}…` : text
  return shown.length === 0 ? "(empty)" : shown
}

/** Blobs are compatible when they are byte for byte equal. */
export const sameBytes = (offered: Uint8Array, local: Uint8Array): string | undefined =>
  Buffer.from(offered).equals(Buffer.from(local))
    ? undefined
    : `compatibility data differs: offered ${showBlob(offered)}, this side has ${showBlob(local)}`

/** No compatibility data at all (every device describes itself as empty): kinds and flags decide alone. */
export const none: Compatibility = {
  describe: () => Effect.succeed(new Uint8Array(0)),
  check: sameBytes
}

/**
 * Compatibility data as a JSON object of facts per device (`{"stateSize":1048576,"pageSize":4096}`),
 * compared for equality. `facts` answers `undefined` for a device it knows nothing about.
 */
export const jsonFacts = (
  facts: (device: Device) => Readonly<Record<string, string | number | boolean>> | undefined
): Compatibility => ({
  describe: (device) => Effect.sync(() => new TextEncoder().encode(JSON.stringify(facts(device) ?? {}))),
  check: sameBytes
})
