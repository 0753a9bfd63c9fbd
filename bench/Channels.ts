/*
 * Figure 7: the real migration (`migrateSource` / `migrateDestination` of `@lockstep/migration`)
 * over 1, 2 and 4 loopback TCP connections, device i on connection i mod N, on simulated devices
 * in real time. Pre-copy is off, so every byte of state moves during the downtime: what more
 * connections change is what the stop-copy drain takes.
 */
import { stop } from "@lockstep/coordinator"
import { Journal, migrateDestination, migrateSource } from "@lockstep/migration"
import { simulateGroup } from "@lockstep/sim"
import { TcpTransport } from "@lockstep/stream"
import { Effect, Exit } from "effect"
import { atMost, contextRow, type Figure, goalRow, median, sampledRow, spread } from "./Figure.js"
import { fabricViolations, sharedIommuGroup } from "./Groups.js"

/** Settings of figure 7. */
export interface ChannelsOptions {
  readonly devices: number
  readonly deviceStateBytes: number
  readonly channels: ReadonlyArray<number>
  readonly warmup: number
  readonly repetitions: number
}

const MiB = 2 ** 20
const GiB = 2 ** 30

interface Run {
  /** The source's own downtime figure: first switchover arc to the destination's confirmation. */
  readonly downtimeMs: number
  readonly wallMs: number
  readonly bytes: number
  readonly violations: number
}

/**
 * One migration of fresh groups over `channels` TCP connections to a listener of this process:
 * the destination's, or with `dialled` the source's, the destination dialling with recycled reads.
 */
const migrateOver = (options: ChannelsOptions, channels: number, seed: number, dialled = false): Effect.Effect<Run> =>
  Effect.scoped(
    Effect.gen(function* () {
      const group = yield* sharedIommuGroup(options.devices, "gpu", {
        stateSize: options.deviceStateBytes,
        precopyInitialBytes: 0,
        dirtyBytesPerSecond: 0,
        arcLatencyMs: 0
      })
      const source = yield* Effect.orDie(simulateGroup(group, { seed }))
      const destination = yield* Effect.orDie(simulateGroup(group, { seed: seed + 1, role: "destination" }))
      yield* Effect.orDie(stop(destination))
      const listener = yield* Effect.orDie(TcpTransport.listen({ host: "127.0.0.1", port: 0 }))
      const connect = TcpTransport.connect({ host: "127.0.0.1", port: listener.port, recycledReads: dialled })
      // Who dials: the source (as `lockstep migrate` does), or the destination.
      const sourceLink = dialled ? listener.accept : connect
      const destinationLink = dialled ? connect : listener.accept
      const journal = Journal.memory()
      const start = performance.now()
      const [sent, received] = yield* Effect.all(
        [
          Effect.exit(
            Effect.scoped(
              Effect.flatMap(sourceLink, (link) =>
                migrateSource(source, link, { journal, precopy: false, channels, openChannel: sourceLink })
              )
            )
          ),
          Effect.exit(
            Effect.scoped(
              Effect.flatMap(destinationLink, (link) =>
                migrateDestination(destination, link, { decisionJournal: journal, acceptChannel: destinationLink })
              )
            )
          )
        ],
        { concurrency: 2 }
      )
      const wallMs = performance.now() - start
      // A benchmark whose migration fails is broken: that is a defect, not a figure.
      if (Exit.isFailure(sent) || Exit.isFailure(received))
        return yield* Effect.die(new Error(`the migration over ${channels} channels failed: ${sent} ${received}`))
      const violations = (yield* fabricViolations(source)) + (yield* fabricViolations(destination))
      return { downtimeMs: sent.value.downtimeMs ?? Number.NaN, wallMs, bytes: sent.value.bytes, violations }
    })
  )

/** Figure 7: each repetition migrates over every channel count back to back; ratios per repetition. */
export const channelsFigure = (options: ChannelsOptions): Effect.Effect<Figure> =>
  Effect.gen(function* () {
    // Each repetition: every channel count, then one connection the destination dials.
    const repetitions = yield* Effect.forEach(Array.from({ length: options.warmup + options.repetitions }), (_, r) =>
      Effect.gen(function* () {
        const runs = yield* Effect.forEach(options.channels, (n) => migrateOver(options, n, 1000 * r + n))
        return { runs, dialled: yield* migrateOver(options, 1, 1000 * r + 999, true) }
      })
    )
    const measured = repetitions.slice(options.warmup).map((r) => r.runs)
    const dialled = repetitions.slice(options.warmup).map((r) => r.dialled)
    const at = (k: number) => measured.map((runs) => runs[k] as Run)
    const total = options.devices * options.deviceStateBytes
    const violations = [...measured.flat(), ...dialled].reduce((sum, run) => sum + run.violations, 0)
    const rows = options.channels.flatMap((n, k) => {
      const runs = at(k)
      const perRun = [
        sampledRow(
          `${n} connection${n === 1 ? "" : "s"}: downtime`,
          runs.map((r) => r.downtimeMs),
          "ms"
        ),
        sampledRow(
          `${n} connection${n === 1 ? "" : "s"}: drain rate (state ÷ downtime)`,
          runs.map((r) => total / GiB / (r.downtimeMs / 1000)),
          "GiB/s"
        )
      ]
      if (k === 0) return perRun
      const ratios = runs.map((r, i) => r.downtimeMs / (at(0)[i] as Run).downtimeMs)
      return [...perRun, sampledRow(`${n} connections / 1: downtime`, ratios, "×")]
    })
    return {
      figure: 7,
      title: "Migration over several TCP connections (real time)",
      method: `migrateSource and migrateDestination on ${options.devices} simulated devices × ${options.deviceStateBytes / MiB} MiB (shared IOMMU, zero-latency arcs, pre-copy off: all ${total / GiB} GiB moves during the downtime), both sides in this process over loopback TCP, device i on connection i mod N (the channels option); each of ${options.repetitions} repetitions (after ${options.warmup} warm-up) runs ${options.channels.join(", ")} connections back to back, ratios per repetition. Downtime is the source's own figure (first switchover arc to the destination's confirmation).`,
      rows: [
        ...rows,
        sampledRow(
          "1 connection the destination dials, recycled reads: downtime",
          dialled.map((r) => r.downtimeMs),
          "ms"
        ),
        sampledRow(
          "destination dials (recycled reads) / source dials: downtime, 1 connection",
          dialled.map((r, i) => r.downtimeMs / (at(0)[i] as Run).downtimeMs),
          "×"
        ),
        contextRow("wall time of a whole migration, 1 connection (median)", median(at(0).map((r) => r.wallMs)), "ms"),
        goalRow("P2P invariant violations (every run)", violations, "", atMost(0, "0"))
      ],
      notes: [
        `downtime runs (ms): ${options.channels
          .map(
            (n, k) =>
              `${n}: ${spread(
                at(k).map((r) => r.downtimeMs),
                0
              )}`
          )
          .join("; ")}.`,
        "“destination dials”: the source listens and the destination connects with TcpTransport.connect's recycled reads (its reads land in a ring of reused buffers instead of a fresh one per socket read; the loader copies each payload into a pooled buffer for its device).",
        "Both sides share this process's one JavaScript thread (and the machine's cores with the kernel's loopback): more connections spread the devices' frames, they cannot add a core. On hosts with a NIC and a core per side, a connection per core is what multifd is for."
      ]
    }
  })
