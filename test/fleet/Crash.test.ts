import { describe, expect, it } from "@effect/vitest"
import { FleetStore, historyOf, Runner, vmKeyOf } from "@lockstep/fleet"
import { Effect } from "effect"
import {
  type FleetDir,
  fleetDir,
  inventories,
  kill,
  lockstep,
  placementOf,
  prng,
  type Run,
  remove,
  run,
  startHosts,
  violations,
  watch
} from "./Harness.js"

/*
 * The orchestrator is killed with SIGKILL at random points — at a random time, or at a chosen
 * device event: the source's arcs into pre-copy or into STOP_COPY (inside the switchover), a
 * destination validating its data, a destination resuming after the commit — and restarted,
 * several times, then left to finish. The simulated hosts live in a process of their own and
 * keep every device where the kill left it; their fabrics check the P2P invariant throughout.
 *
 * Then, from the hosts' devices alone: every VM is either migrated (destination RUNNING, source
 * halted) or rolled back (source RUNNING, destination not running), never both and never
 * neither; no P2P violation anywhere; the final report names every VM with the outcome its
 * devices show; and the commit journal shows no VM committed twice or begun again after its
 * commit. The seed is printed; FLEET_CRASH_SEED=… replays the same choices.
 */

const hosts = ["a", "b", "c"]
const gpu = (i: number) => ({
  id: `g${i}`,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 128 * 1024, arcLatencyMs: 3, dirtyBytesPerSecond: 4096 }
})
const fleetDoc = {
  hosts: hosts.map((name) => ({ name, nicBandwidth: 2 * 1024 * 1024, capacity: 32 })),
  vms: Array.from({ length: 4 }, (_, i) => ({ name: `vm${i}`, host: "a", group: { devices: [0, 1, 2, 3].map(gpu) } })),
  evacuate: "a",
  migration: { downtimeLimitMs: 500, maxRounds: 4 },
  simulation: { seed: 7, p2pWritesPerSecond: 2 }
}

/** Where a kill happens: after a delay, or at the nth device event that matches. */
type KillPoint =
  | { readonly kind: "time"; readonly afterMs: number }
  | {
      readonly kind: "event"
      readonly label: string
      readonly host: "source" | "destination"
      readonly to: string
      readonly from?: string
      readonly nth: number
    }

const pointsOf = (random: () => number): KillPoint => {
  const nth = 1 + Math.floor(random() * 12)
  const kinds: ReadonlyArray<KillPoint> = [
    { kind: "time", afterMs: 1_500 + Math.floor(random() * 3_000) },
    { kind: "event", label: "source arc into PRE_COPY (pre-copy begins)", host: "source", to: "PRE_COPY", nth },
    { kind: "event", label: "source arc into STOP_COPY (inside the switchover)", host: "source", to: "STOP_COPY", nth },
    {
      kind: "event",
      label: "destination RESUMING → STOP (validating)",
      host: "destination",
      to: "STOP",
      from: "RESUMING",
      nth
    },
    {
      kind: "event",
      label: "destination STOP → RUNNING_P2P (resuming after the commit)",
      host: "destination",
      to: "RUNNING_P2P",
      from: "STOP",
      nth
    }
  ]
  return kinds[Math.floor(random() * kinds.length)] ?? { kind: "time", afterMs: 2_000 }
}

interface Outcome {
  readonly ok: boolean
  readonly resumed: boolean
  readonly violations: number
  readonly vms: ReadonlyArray<{
    readonly vm: string
    readonly source: string
    readonly destination: string
    readonly outcome: string
  }>
}

/** Runs one orchestrator, killing it at `point` if it gets there; answers whether it was killed. */
const orchestrate = async (
  f: FleetDir,
  point: KillPoint | undefined
): Promise<{ killed: boolean; result: Awaited<Run["done"]> }> => {
  const r = lockstep(["fleet", "evacuate", f.file, "--state", f.state, "--json", "--keep-hosts"])
  const stops: Array<() => Promise<void>> = []
  let killed = false
  const fire = () => {
    if (killed) return
    killed = true
    r.child.kill("SIGKILL")
  }
  if (point?.kind === "time") {
    const timer = setTimeout(fire, point.afterMs)
    r.done.then(() => clearTimeout(timer))
  } else if (point?.kind === "event") {
    let seen = 0
    for (const host of point.host === "source" ? ["a"] : ["b", "c"])
      stops.push(
        await watch(f, host, (e) => {
          if (e.event !== "ArcStarted" || e.to !== point.to || (point.from !== undefined && e.state !== point.from))
            return
          seen += 1
          if (seen === point.nth) fire()
        })
      )
  }
  const result = await r.done
  for (const stop of stops) await stop()
  return { killed, result }
}

describe("the fleet under orchestrator crashes", () => {
  it("kill -9 at random points, then restart: every VM migrated or rolled back, never both or neither", async () => {
    const seed = Number(process.env.FLEET_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
    process.stdout.write(`fleet crash test seed ${seed} (replay with FLEET_CRASH_SEED=${seed})\n`)
    const random = prng(seed)
    const f = fleetDir(fleetDoc)
    const hostsRun: Run = await startHosts(f, hosts)
    try {
      const kills: Array<string> = []
      let finished: Awaited<Run["done"]> | undefined
      for (let round = 0; round < 3 && finished === undefined; round++) {
        const point = pointsOf(random)
        const { killed, result } = await orchestrate(f, point)
        // Not killed: it finished before the kill point came, and that is the final report.
        if (!killed) finished = result
        else kills.push(point.kind === "time" ? `after ${point.afterMs} ms` : `at the ${point.nth}th ${point.label}`)
      }
      process.stdout.write(`killed the orchestrator ${kills.length} time(s): ${kills.join("; ")}\n`)
      finished ??= (await orchestrate(f, undefined)).result
      expect(finished.stderr).not.toContain("Error")
      const report = JSON.parse(finished.stdout) as Outcome
      // The final run's report is the evacuation's, not a failure's: say what came instead.
      expect(report.vms, `the last run printed ${finished.stdout} ${finished.stderr}`).toBeDefined()

      const invs = await inventories(f, hosts)
      expect(violations(invs)).toEqual([])
      expect(report.violations).toBe(0)
      // Nothing unreported: every VM is in the report, with the outcome its devices show.
      expect(report.vms.map((v) => v.vm).sort()).toEqual(fleetDoc.vms.map((v) => v.name).sort())
      for (const v of report.vms) {
        const placed = placementOf(invs, v.vm, v.source, v.destination)
        const held = invs.map((i) => ({ host: i.host, vm: i.vms.find((x) => x.vm === v.vm) }))
        expect(
          ["migrated", "rolled-back"],
          `${v.vm}: ${placed}: ${JSON.stringify(v)} ${JSON.stringify(held)}`
        ).toContain(placed)
        expect(v.outcome, v.vm).toBe(placed)
      }
      // No VM committed twice, nor began a migration again once committed.
      const evacuation = (JSON.parse(finished.stdout) as { evacuation: string }).evacuation
      const [histories, recorded] = await run(
        Effect.all([
          Effect.forEach(report.vms, (v) => historyOf(vmKeyOf(evacuation, v.vm))),
          FleetStore.evacuations
        ]).pipe(Effect.provide(Runner.storageOnly({ state: f.state })))
      )
      // Every restart resumed the one evacuation; none began another.
      expect(recorded.map((e) => e.id)).toEqual([evacuation])
      report.vms.forEach((v, i) => {
        const history = histories[i] ?? []
        const commits = history.filter((c) => c.status === "committed")
        expect(commits.length, `${v.vm} commits`).toBeLessThanOrEqual(1)
        const committedAt = commits[0]?.at
        if (committedAt !== undefined)
          expect(
            history.filter((c) => c.status === "started" && c.at > committedAt),
            `${v.vm} began after its commit`
          ).toEqual([])
        expect(commits.length === 1, `${v.vm}: ${JSON.stringify(history)}`).toBe(v.outcome === "migrated")
      })
      // A kill between the evacuation's end and its report leaves nothing to resume: the run
      // after it reads the finished evacuation back, moving nothing and beginning nothing.
      const again = (await orchestrate(f, undefined)).result
      const reread = JSON.parse(again.stdout) as Outcome & { evacuation: string; alreadyFinished: boolean }
      expect(reread.evacuation).toBe(evacuation)
      expect(reread.alreadyFinished, again.stdout).toBe(true)
      expect(reread.vms.map((v) => [v.vm, v.outcome])).toEqual(report.vms.map((v) => [v.vm, v.outcome]))
      expect(violations(await inventories(f, hosts))).toEqual([])
    } finally {
      await kill(hostsRun)
      remove(f)
    }
  }, 180_000)
})
