/*
 * What the source side of figure 4 (the main thread) and the destination side (a worker
 * thread, standing for the other host) tell each other. The bytes themselves travel over
 * loopback TCP; these messages only arm and report the runs.
 */

/** What the destination does with what it receives. */
export type Receiving =
  /** Raw bytes on a plain socket, counted and dropped: the floor. */
  | "raw"
  /**
   * The framed stream on a plain socket, decoded inside its 'data' events by a bare decoder (no
   * reader, no fiber), payloads counted and dropped: what the format costs the receiver by itself.
   */
  | "bare"
  /**
   * Raw bytes again, on a connection the destination dials (to `dialPort`), read through Node's
   * `onread` into one reused buffer: the raw copy without a fresh buffer per socket read.
   */
  | "rawDialled"
  /**
   * Frames decoded and checked, payloads counted and dropped, on a connection the destination
   * dials (to `dialPort`) with `TcpTransport.connect`'s recycled reads: the product's reader on
   * the read path that spares Node's per-read allocation (`onread` exists on dialled sockets only).
   */
  | "dialled"
  /** Frames decoded and checked, payloads counted and dropped. */
  | "decode"
  /** Frames decoded and checked, payloads written into the destination devices, which then validate (→ STOP). */
  | "resume"

/** The destination's configuration, passed as `workerData`. */
export interface DestinationSetup {
  readonly deviceIds: ReadonlyArray<string>
  readonly deviceStateBytes: number
  readonly pageSize: number
}

/** Source → destination. */
export type Command =
  /** `channels`: how many connections the stream comes over (each with a manifest of its devices). */
  | {
      readonly _tag: "Arm"
      readonly receiving: Receiving
      readonly channels: number
      /** `rawDialled` and `dialled`: the source's port to dial. */
      readonly dialPort?: number
    }
  | { readonly _tag: "Close" }

/** Destination → source. */
export type Report =
  | { readonly _tag: "Ready"; readonly streamPort: number; readonly rawPort: number }
  /** Listening and, for `resume`, every destination device in RESUMING: the source may start. */
  | { readonly _tag: "Armed" }
  /** Everything received: payload bytes, and whether every device validated (`resume`) or the stream ended cleanly. */
  /**
   * `busyMs`: how long the destination thread was busy (event-loop active time) during the run;
   * `majorGcs`, `majorGcMs`: the full (mark-compact) collections of its heap during the run, and
   * their pauses.
   */
  | {
      readonly _tag: "Received"
      readonly bytes: number
      readonly valid: boolean
      readonly problem: string | undefined
      readonly busyMs: number
      readonly majorGcs: number
      readonly majorGcMs: number
    }
