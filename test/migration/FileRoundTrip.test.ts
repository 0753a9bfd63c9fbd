/*
 * A group's state saved to a file and restored into a fresh group, over the stream's file
 * transport, on real time with P2P traffic running until the save stops the group.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { decodeGroup, stop } from "@lockstep/coordinator"
import { restoreGroup, saveGroup } from "@lockstep/migration"
import { compareMemory, type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { FileTransport } from "@lockstep/stream"
import { Effect } from "effect"
import { failureOf, simCompatibility, statesOf, threeGpus } from "../../packages/migration/test/Harness.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-snapshot-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const group = (role: string | undefined) =>
  Effect.gen(function* () {
    const sim = yield* simulateGroup(yield* decodeGroup(threeGpus), {
      seed: 3,
      writesPerSecond: 5000,
      ...(role === undefined ? {} : { role })
    })
    return sim
  })

const noViolations = (...sims: ReadonlyArray<SimulatedGroup>) =>
  Effect.forEach(sims, (sim) => sim.fabric.assertNoViolations, { discard: true })

const save = (source: SimulatedGroup, path: string) =>
  Effect.scoped(
    Effect.flatMap(FileTransport.sink(path), (sink) =>
      saveGroup(source, sink, { compatibility: simCompatibility([source]) })
    )
  )

describe("save to a file, restore into a fresh group", () => {
  it.live("round-trips every device's state byte for byte", () =>
    Effect.gen(function* () {
      const path = join(dir, "group.lockstep")
      const source = yield* group(undefined)
      yield* Effect.sleep(20)
      const saved = yield* save(source, path)
      expect(saved.states).toEqual({ gpu0: "STOP_COPY", gpu1: "STOP_COPY", gpu2: "STOP_COPY" })
      expect((yield* Effect.promise(() => stat(path))).size).toBeGreaterThan(saved.bytes)

      const fresh = yield* group("restored")
      yield* stop(fresh)
      const restored = yield* Effect.scoped(
        Effect.flatMap(FileTransport.source(path), (bytes) =>
          restoreGroup(fresh, bytes, { compatibility: simCompatibility([source, fresh]), resume: false })
        )
      )
      expect(restored.bytes).toBe(saved.bytes)
      expect(restored.states).toEqual({ gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" })
      for (const [id, device] of source.devices) {
        const twin = fresh.devices.get(id)
        if (twin === undefined) return yield* Effect.die(new Error(`no ${id}`))
        expect((yield* compareMemory(device, twin))._tag).toBe("Identical")
      }
      yield* noViolations(source, fresh)
    })
  )

  it.live("a truncated file is a typed error, and the group it was loading is reset and parked", () =>
    Effect.gen(function* () {
      const path = join(dir, "truncated.lockstep")
      const source = yield* group(undefined)
      yield* save(source, path)
      const bytes = yield* Effect.promise(() => readFile(path))
      yield* Effect.promise(() => writeFile(path, bytes.subarray(0, Math.floor(bytes.length * 0.7))))
      const fresh = yield* group("restored")
      yield* stop(fresh)
      const error = yield* failureOf(
        yield* Effect.exit(
          Effect.scoped(
            Effect.flatMap(FileTransport.source(path), (input) =>
              restoreGroup(fresh, input, { compatibility: simCompatibility([source, fresh]) })
            )
          )
        )
      )
      expect(error).toMatchObject({
        side: "destination",
        phase: "drain",
        origin: "channel",
        recovered: true,
        cause: { _tag: "FormatError", reason: { _tag: "Truncated" } }
      })
      expect(yield* statesOf(fresh)).toEqual({ gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" })
      yield* noViolations(source, fresh)
    })
  )

  it.live("a file of another group is refused before any device is touched", () =>
    Effect.gen(function* () {
      const path = join(dir, "other.lockstep")
      const other = yield* simulateGroup(
        yield* decodeGroup({ devices: [{ id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] }] })
      )
      yield* save(other, path)
      const fresh = yield* group("restored")
      const error = yield* failureOf(
        yield* Effect.exit(
          Effect.scoped(Effect.flatMap(FileTransport.source(path), (input) => restoreGroup(fresh, input)))
        )
      )
      expect(error).toMatchObject({ phase: "handshake", cause: { _tag: "HandshakeRefused" } })
      expect(fresh.fabric.trace()).toEqual([])
      yield* noViolations(other, fresh)
    })
  )
})
