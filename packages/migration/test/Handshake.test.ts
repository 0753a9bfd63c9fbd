import { describe, expect, it } from "@effect/vitest"
import { DeviceError } from "@lockstep/device"
import { Compatibility, checkManifest, describeRefusal, Journal } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import type { Manifest } from "@lockstep/stream"
import { Effect } from "effect"
import { assertSafe, failureOf, type GroupDoc, makePair, migrate, statesOf, threeGpus, wrapDevices } from "./Harness.js"

const encode = (text: string) => new TextEncoder().encode(text)

const offer = (devices: Manifest["devices"]): Manifest => ({ _tag: "Manifest", devices })

const gpu = (id: string, compat = "") => ({ id, kind: "pci" as const, flags: 7, compat: encode(compat) })

describe("Handshake", () => {
  it.effect("accepts the same devices with the same kinds, flags and compatibility data", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const refusals = yield* checkManifest(
        offer([gpu("gpu2"), gpu("gpu0"), gpu("gpu1")]),
        pair.destination,
        Compatibility.none
      )
      expect(refusals).toEqual([])
      yield* assertSafe(pair)
    })
  )

  it.effect("refuses, with every reason, unknown and missing devices, other kinds, flags and compatibility data", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const refusals = yield* checkManifest(
        offer([
          { ...gpu("gpu0"), kind: "mdev" },
          { ...gpu("gpu1"), flags: 3 },
          gpu("gpu9"),
          gpu("gpu2", '{"stateSize":1}')
        ]),
        pair.destination,
        Compatibility.none
      )
      expect(refusals).toEqual([
        { _tag: "KindMismatch", device: "gpu0", offered: "mdev", local: "pci" },
        {
          _tag: "FlagsMismatch",
          device: "gpu1",
          offered: ["STOP_COPY", "P2P"],
          local: ["STOP_COPY", "P2P", "PRE_COPY"]
        },
        { _tag: "NoSuchDevice", device: "gpu9" },
        {
          _tag: "Incompatible",
          device: "gpu2",
          reason: 'compatibility data differs: offered {"stateSize":1}, this side has (empty)'
        }
      ])
      expect(refusals.map(describeRefusal)).toContain(
        "gpu1 has flags STOP_COPY, P2P on the source but STOP_COPY, P2P, PRE_COPY here"
      )
      const missing = yield* checkManifest(offer([gpu("gpu0")]), pair.destination, Compatibility.none)
      expect(missing).toEqual([
        { _tag: "MissingDevice", device: "gpu1" },
        { _tag: "MissingDevice", device: "gpu2" }
      ])
      yield* assertSafe(pair)
    })
  )

  it.effect("a destination with other state sizes refuses before either side touches a device", () =>
    Effect.gen(function* () {
      const bigger: GroupDoc = {
        ...threeGpus,
        devices: threeGpus.devices.map((d) =>
          d.id === "gpu1" ? { ...d, sim: { ...d.sim, stateSize: 128 * 1024 } } : d
        )
      }
      const pair = yield* runOnVirtualTime(makePair(threeGpus, bigger))
      const parked = pair.destination.fabric.trace().length
      const out = yield* runOnVirtualTime(migrate(pair))
      const source = yield* failureOf(out.source)
      const destination = yield* failureOf(out.destination)
      for (const error of [source, destination]) {
        expect(error).toMatchObject({ phase: "handshake", origin: "destination", recovered: true, touched: false })
        expect(error.message).toContain(`; nothing was touched on the ${error.side};`)
        expect(error.message).not.toMatch(/back in RUNNING|reset and parked/)
        expect(error.cause).toMatchObject({
          _tag: "HandshakeRefused",
          refusals: [{ _tag: "Incompatible", device: "gpu1" }]
        })
      }
      expect(pair.source.fabric.trace()).toEqual([])
      expect(pair.destination.fabric.trace()).toHaveLength(parked)
      expect(yield* statesOf(pair.source)).toEqual({ gpu0: "RUNNING", gpu1: "RUNNING", gpu2: "RUNNING" })
      expect((yield* Journal.ownership(pair.journal))._tag).toBe("SourceOwns")
      yield* assertSafe(pair)
    })
  )

  it.effect("a source group that is not migratable fails before it offers anything", () =>
    Effect.gen(function* () {
      const blocked: GroupDoc = {
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
          { id: "nic0", kind: "pci", flags: ["STOP_COPY"] }
        ],
        topology: "shared-iommu"
      }
      const pair = yield* runOnVirtualTime(makePair(blocked))
      const out = yield* runOnVirtualTime(migrate(pair))
      expect(yield* failureOf(out.source)).toMatchObject({
        phase: "handshake",
        origin: "source",
        cause: { _tag: "NotMigratable", side: "source", blockers: [{ device: "nic0" }] }
      })
      expect((yield* failureOf(out.destination)).phase).toBe("handshake")
      expect((yield* failureOf(out.source)).message).toContain("; nothing was touched on the source;")
      expect(pair.source.fabric.trace()).toEqual([])
      yield* assertSafe(pair)
    })
  )

  it.effect("a group step refused before any arc (a state it cannot read) says that nothing was touched", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      // gpu1's state cannot be read (the handshake does not ask for it; the first group step does).
      const runtime = wrapDevices(pair.source, (d) =>
        d.id === "gpu1"
          ? {
              ...d,
              getState: Effect.fail(
                DeviceError.unreachable({ device: d.id, operation: "getState", reason: "the server went away" })
              )
            }
          : d
      )
      const out = yield* runOnVirtualTime(migrate(pair, { runtimes: { source: runtime } }))
      const source = yield* failureOf(out.source)
      expect(source).toMatchObject({ phase: "prepare", touched: false, cause: { _tag: "TransitionRefused" } })
      expect(source.message).toContain("; nothing was touched on the source;")
      expect(source.message).not.toContain("back in RUNNING")
      expect(pair.source.fabric.trace()).toEqual([])
      yield* assertSafe(pair)
    })
  )
})
