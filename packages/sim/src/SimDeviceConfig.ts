import { type DeviceKind, DeviceKinds, stopArcOfQuiesce } from "@lockstep/device"
import { AllFlags, type Arc, type Flags, FlagsSchema, type State, States } from "@lockstep/fsm"
import { Schema, SchemaGetter } from "effect"
import { FaultPlan } from "./FaultPlan.js"

/** An arc named as `"FROM>TO"`, e.g. `"RUNNING>RUNNING_P2P"`: the key of per-arc settings. */
export type ArcKey = `${State}>${State}`

/** The key of an arc. */
export const arcKey = (arc: Arc): ArcKey => `${arc.from}>${arc.to}`

/**
 * The configuration of one simulated device; every field is optional. Group files carry it
 * under the per-device key `"sim"` and decode it with the `SimDeviceConfig` codec.
 */
export interface SimDeviceConfig {
  /** Default `pci`. */
  readonly kind?: DeviceKind
  /** Migration capabilities, as names or the uAPI mask in JSON. Default: all three. */
  readonly flags?: Flags
  /** Latency of every arc, in ms of virtual time. Default 1. */
  readonly arcLatencyMs?: number
  /** Per-arc latencies overriding `arcLatencyMs`, e.g. `{"RUNNING>RUNNING_P2P": 5}`. */
  readonly arcLatenciesMs?: ArcLatencies
  /** Size of the device state (its memory), in bytes. Default 1 MiB. */
  readonly stateSize?: number
  /**
   * How much of the state is available to pre-copy, in bytes (rounded up to whole pages);
   * the rest only moves in STOP_COPY. At most `stateSize`. Default: all of it.
   */
  readonly precopyInitialBytes?: number
  /** Bytes of its own memory the device dirties per second while initiating. Default 64 KiB/s. */
  readonly dirtyBytesPerSecond?: number
  /** Page size in bytes, a multiple of 4 from 16 to 16 MiB. Default 4096. */
  readonly pageSize?: number
  /** Seed of the device's memory content and dirtying (mixed with the device id). Default 0. */
  readonly seed?: number
  /** Injected faults. Default none. */
  readonly faults?: FaultPlan
  /**
   * The device takes the `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2` opt-in (and may then report
   * REINIT). Default false: it declines, as kernels before the 2026 series do.
   */
  readonly precopyInfoV2?: boolean
  /**
   * The 1-based count of the device's pre-copy info queries at which it re-initialises: new
   * initial data (its whole pre-copy portion) is due again and that query reports REINIT. Only
   * after the v2 opt-in; a device that did not take it never re-initialises. Default: never.
   */
  readonly reinitAtQuery?: number
  /**
   * The device implements RUNNING_P2P by stopping (Intel xe): an arc into a P2P state from an
   * initiating one takes the latency of the device's stop arc from that P2P state. Default false.
   */
  readonly p2pQuiesceIsStop?: boolean
}

/** A configuration with every default applied. */
export interface ResolvedSimDeviceConfig {
  readonly kind: DeviceKind
  readonly flags: Flags
  readonly arcLatencyMs: number
  readonly arcLatenciesMs: ArcLatencies
  readonly stateSize: number
  readonly precopyInitialBytes: number
  readonly dirtyBytesPerSecond: number
  readonly pageSize: number
  readonly seed: number
  readonly faults: FaultPlan
  readonly precopyInfoV2: boolean
  readonly reinitAtQuery: number | undefined
  readonly p2pQuiesceIsStop: boolean
}

const arcKeys: ReadonlyArray<ArcKey> = States.flatMap((from) => States.map((to): ArcKey => `${from}>${to}`))
const arcKeySet: ReadonlySet<string> = new Set(arcKeys)
const isArcKey = (key: string): key is ArcKey => arcKeySet.has(key)
const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const defaultStateSize = 1 << 20

type ArcLatencies = { readonly [arc in ArcKey]?: number }
const arcLatenciesOf = (record: { readonly [key: string]: number | undefined }): ArcLatencies => {
  const out: { [arc in ArcKey]?: number } = {}
  for (const [key, ms] of Object.entries(record)) if (isArcKey(key) && ms !== undefined) out[key] = ms
  return out
}

/**
 * Per-arc latencies. Keys are checked, not silently dropped: a misspelt arc is an error
 * (object decoding ignores unknown keys by default, which would hide it).
 */
const ArcLatenciesSchema = Schema.Record(Schema.String, NonNegative)
  .check(
    Schema.makeFilter((record: { readonly [key: string]: number }) => {
      const unknown = Object.keys(record).filter((key) => !isArcKey(key))
      return unknown.length === 0 || `unknown arc(s) ${unknown.join(", ")}; keys are "FROM>TO" state names`
    })
  )
  .pipe(
    Schema.decodeTo(Schema.Record(Schema.Literals(arcKeys), Schema.optionalKey(NonNegative)), {
      decode: SchemaGetter.transform(arcLatenciesOf),
      encode: SchemaGetter.transform(arcLatenciesOf)
    })
  )

/**
 * The keys of a simulated device's configuration, for a document that holds one beside keys
 * of its own (the vfio-user device file: the configuration and its PCI ids).
 */
export const SimDeviceConfigFields = {
  kind: Schema.optionalKey(Schema.Literals(DeviceKinds)),
  flags: Schema.optionalKey(FlagsSchema),
  arcLatencyMs: Schema.optionalKey(NonNegative),
  arcLatenciesMs: Schema.optionalKey(ArcLatenciesSchema),
  stateSize: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 ** 32 - 4 }))),
  precopyInitialBytes: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  dirtyBytesPerSecond: Schema.optionalKey(NonNegative),
  pageSize: Schema.optionalKey(
    Schema.Int.check(Schema.isBetween({ minimum: 16, maximum: 2 ** 24 }), Schema.isMultipleOf(4))
  ),
  seed: Schema.optionalKey(Schema.Int),
  faults: Schema.optionalKey(FaultPlan),
  precopyInfoV2: Schema.optionalKey(Schema.Boolean),
  reinitAtQuery: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  p2pQuiesceIsStop: Schema.optionalKey(Schema.Boolean)
}

/** Pre-copy moves a part of the state: `precopyInitialBytes` cannot be larger than `stateSize`. */
export const precopyWithinState = Schema.makeFilter(
  (config: { readonly stateSize?: number; readonly precopyInitialBytes?: number }) => {
    const stateSize = config.stateSize ?? defaultStateSize
    const initial = config.precopyInitialBytes
    return initial === undefined || initial <= stateSize
      ? true
      : {
          path: ["precopyInitialBytes"],
          issue: `${initial} is larger than the state (stateSize ${stateSize}${config.stateSize === undefined ? ", the default" : ""}); it is the part of the state pre-copy can move, at most stateSize`
        }
  }
)

const SimDeviceConfigCodec = Schema.Struct(SimDeviceConfigFields)
  .check(precopyWithinState)
  .annotate({ identifier: "SimDeviceConfig", description: "the configuration of a simulated device" })

/** A simulated device's configuration as written in JSON. */
export type SimDeviceConfigEncoded = typeof SimDeviceConfigCodec.Encoded

/**
 * Decodes a simulated device's configuration (the `"sim"` key of a device in a group file).
 * Flags may be names or a mask, states in faults names or uAPI numbers.
 */
export const SimDeviceConfig: Schema.Codec<SimDeviceConfig, SimDeviceConfigEncoded> = SimDeviceConfigCodec

/** The defaults of a simulated device. */
export const defaultSimDeviceConfig: ResolvedSimDeviceConfig = {
  kind: "pci",
  flags: AllFlags,
  arcLatencyMs: 1,
  arcLatenciesMs: {},
  stateSize: defaultStateSize,
  precopyInitialBytes: defaultStateSize,
  dirtyBytesPerSecond: 64 << 10,
  pageSize: 4096,
  seed: 0,
  faults: [],
  precopyInfoV2: false,
  reinitAtQuery: undefined,
  p2pQuiesceIsStop: false
}

/** Applies the defaults; `precopyInitialBytes` defaults to, and is capped at, `stateSize`. */
export const resolveSimDeviceConfig = (config: SimDeviceConfig): ResolvedSimDeviceConfig => {
  const d = defaultSimDeviceConfig
  const stateSize = config.stateSize ?? d.stateSize
  return {
    kind: config.kind ?? d.kind,
    flags: config.flags ?? d.flags,
    arcLatencyMs: config.arcLatencyMs ?? d.arcLatencyMs,
    arcLatenciesMs: config.arcLatenciesMs ?? d.arcLatenciesMs,
    stateSize,
    precopyInitialBytes: Math.min(stateSize, config.precopyInitialBytes ?? stateSize),
    dirtyBytesPerSecond: config.dirtyBytesPerSecond ?? d.dirtyBytesPerSecond,
    pageSize: config.pageSize ?? d.pageSize,
    seed: config.seed ?? d.seed,
    faults: config.faults ?? d.faults,
    precopyInfoV2: config.precopyInfoV2 ?? d.precopyInfoV2,
    reinitAtQuery: config.reinitAtQuery ?? d.reinitAtQuery,
    p2pQuiesceIsStop: config.p2pQuiesceIsStop ?? d.p2pQuiesceIsStop
  }
}

const configured = (config: ResolvedSimDeviceConfig, arc: Arc): number =>
  config.arcLatenciesMs[arcKey(arc)] ?? config.arcLatencyMs

/**
 * The latency of `arc` for a device with this configuration, in ms. With `p2pQuiesceIsStop`, a
 * quiesce arc costs what the stop arc after it costs (see {@link stopArcOfQuiesce}).
 */
export const arcLatency = (config: ResolvedSimDeviceConfig, arc: Arc): number => {
  const stop = config.p2pQuiesceIsStop ? stopArcOfQuiesce(arc) : undefined
  return configured(config, stop ?? arc)
}
