import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, type GroupRuntime, TransitionFailed, transition } from "@lockstep/coordinator"
import { DeviceError } from "@lockstep/device"
import { runOnVirtualTime, simulateGroup } from "@lockstep/sim"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { runMigration } from "../exhaustive/Migrations.js"
import { type CampaignCase, runCampaignCase } from "./Campaign.js"
import { makeStats } from "./Replay.js"

/**
 * Bugs the fuzzers found in the coordinator, as the shrunk scenarios that found them (they fail on
 * the code before the fix): kept so that they stay fixed whatever the generators draw next.
 */

const campaign = (c: CampaignCase) =>
  Effect.runPromise(runCampaignCase(c, makeStats()).pipe(Effect.provide(TestClock.layer())))

const pci = (
  id: string,
  flags: number,
  arcLatencyMs = 0,
  faults: CampaignCase["doc"]["devices"][number]["sim"]["faults"] = []
) => ({
  id,
  kind: "pci" as const,
  flags,
  sim: { arcLatencyMs, faults }
})

describe("fuzz: regressions found by the fuzzers", () => {
  it("a device that started in PRE_COPY_P2P rolls back to RUNNING_P2P, not RUNNING beside a halted peer", async () => {
    // Start: pci0 STOP, pci5 PRE_COPY_P2P (one P2P domain). To STOP_COPY; a device fails; pci5,
    // now in STOP_COPY, cannot return to PRE_COPY_P2P. Rolling it back to RUNNING would leave it
    // initiating into pci0 (STOP): the planner refused the whole rollback and nothing moved back.
    expect(
      await campaign({
        doc: {
          devices: [
            pci("pci0", 1, 4),
            {
              id: "ap1",
              kind: "ap",
              flags: 7,
              sim: { arcLatencyMs: 4, faults: [{ _tag: "HangArc", nth: 11, times: 1 }] }
            },
            pci("pci2", 3),
            pci("pci3", 3, 0, [{ _tag: "FailArc", nth: 7, leaveIn: "error", code: "EAGAIN", times: 2 }]),
            pci("pci4", 1, 4),
            pci("pci5", 7, 3, [{ _tag: "HangArc", from: "STOP_COPY", nth: 7, times: 1 }]),
            pci("pci6", 7)
          ],
          topology: { domains: [["pci0", "pci2", "pci5", "pci6"]], edges: [] }
        },
        seed: 0,
        steps: [
          {
            request: { _tag: "Mixed", picks: [0, 0, 0, 0, 0, 20, 10, 0, 0, 0, 0, 0] },
            policy: "reset",
            arcTimeoutMs: 8,
            interruptAtMs: undefined
          },
          {
            request: { _tag: "Adapted", state: "STOP_COPY" },
            policy: "reset",
            arcTimeoutMs: 8,
            interruptAtMs: undefined
          }
        ]
      })
    ).toEqual([])
  })

  it("a device reset under the reset policy does not stop its peers from rolling back to halted states", async () => {
    // A shared-IOMMU group in STOP_COPY goes to STOP; pci10 fails into ERROR and is reset to
    // RUNNING. The planner took it for an initiator beside halted peers and refused the whole
    // rollback; a reset device has bus mastering off until its next arc.
    expect(
      await campaign({
        doc: {
          devices: [
            pci("pci0", 3),
            pci("pci1", 3),
            { id: "ccw2", kind: "ccw", flags: 3, sim: { arcLatencyMs: 0, faults: [] } },
            pci("pci3", 3),
            pci("pci4", 3),
            { id: "ap6", kind: "ap", flags: 7, sim: { arcLatencyMs: 0, faults: [] } },
            pci("pci9", 3, 0, [
              {
                _tag: "FailArc",
                from: "RUNNING",
                to: "RUNNING_P2P",
                nth: 1,
                leaveIn: "original",
                code: "EIO",
                times: 2
              }
            ]),
            pci("pci10", 1, 0, [{ _tag: "FailArc", nth: 3, leaveIn: "error", code: "EIO", times: 2 }])
          ],
          topology: "shared-iommu"
        },
        seed: 0,
        steps: [
          { request: { _tag: "Adapted", state: "STOP" }, policy: "reset", arcTimeoutMs: 8, interruptAtMs: undefined },
          {
            request: { _tag: "Adapted", state: "STOP_COPY" },
            policy: "reset",
            arcTimeoutMs: 8,
            interruptAtMs: undefined
          },
          { request: { _tag: "Adapted", state: "STOP" }, policy: "reset", arcTimeoutMs: 8, interruptAtMs: undefined }
        ]
      })
    ).toEqual([])
  })

  it("an arc that fails at once into ERROR stops the runner from halting its targets next", async () => {
    // pci6's RUNNING_P2P → STOP fails into ERROR as soon as it starts (no latency); the runner,
    // starting the arcs that became ready together, started pci0's RUNNING_P2P → STOP after it
    // without hearing of the failure already reported, and pci6 (ERROR) could write into pci0.
    expect(
      await campaign({
        doc: {
          devices: [
            pci("pci0", 3),
            { id: "mdev1", kind: "mdev", flags: 1, sim: { arcLatencyMs: 0, faults: [] } },
            pci("pci2", 1),
            pci("pci6", 3, 0, [
              { _tag: "FailArc", from: "RUNNING_P2P", to: "STOP", leaveIn: "error", code: "EIO", times: 2 }
            ]),
            {
              id: "ccw7",
              kind: "ccw",
              flags: 1,
              sim: {
                arcLatencyMs: 0,
                faults: [{ _tag: "FailArc", from: "RUNNING", to: "STOP", leaveIn: "original", code: "EIO", times: 1 }]
              }
            }
          ],
          topology: { domains: [["pci0", "pci6"]], edges: [] }
        },
        seed: 0,
        steps: [
          { request: { _tag: "Adapted", state: "STOP" }, policy: "reset", arcTimeoutMs: 1, interruptAtMs: undefined }
        ]
      })
    ).toEqual([])
  })

  for (const reset of ["hangs", "fails"] as const) {
    it.effect(`a reset that ${reset} during the rollback is reported, not swallowed`, () =>
      Effect.gen(function* () {
        // The rollback used to ignore the reset's failure or timeout and report the group as
        // rolled back with gpu1 still in ERROR and not quarantined.
        const group = yield* decodeGroup({
          devices: [
            { id: "gpu0", kind: "pci", flags: 7 },
            {
              id: "gpu1",
              kind: "pci",
              flags: 7,
              sim: { faults: [{ _tag: "FailArc", from: "RUNNING", to: "RUNNING_P2P", leaveIn: "error" }] }
            }
          ]
        })
        const sim = yield* simulateGroup(group)
        const runtime: GroupRuntime = {
          group,
          devices: new Map(
            [...sim.devices].map(([id, d]) => [
              id,
              id !== "gpu1"
                ? d
                : {
                    ...d,
                    reset:
                      reset === "hangs"
                        ? Effect.never
                        : Effect.fail(DeviceError.resetFailed({ device: id, code: "EIO", reason: "injected" }))
                  }
            ])
          )
        }
        const error = yield* Effect.flip(runOnVirtualTime(transition(runtime, "STOP", { arcTimeoutMs: 20 })))
        expect(error).toBeInstanceOf(TransitionFailed)
        if (!(error instanceof TransitionFailed)) return
        expect(error.rolledBack).toBe(false)
        expect(error.rollbackCause).toMatchObject({ _tag: "DeviceError", reason: { _tag: "ResetFailed" } })
        expect(error.finalStates).toEqual({ gpu0: "RUNNING", gpu1: "ERROR" })
      })
    )
  }
})

describe("fuzz: regressions found by the sessions fuzzer", () => {
  it.effect(
    "a destination whose parking fails after a failed migration goes back to RUNNING by a reset, never by an arc that lets it run",
    () =>
      Effect.gen(function* () {
        // The destination failed to prepare and reset its devices; parking them in STOP then failed
        // (gpu1's arc to STOP hung into its timeout), and the park's own rollback took gpu0 back up to
        // RUNNING through an arc that let it run again, beside a source that runs.
        const group = {
          devices: [
            { id: "gpu0", kind: "pci" as const, flags: 7 },
            { id: "gpu1", kind: "pci" as const, flags: 7 }
          ],
          topology: "shared-iommu" as const
        }
        // gpu1's arcs: 2 to park before the migration, then prepare and its rollback; the park after
        // the failure comes a few arcs later, whichever it is.
        for (let nth = 3; nth <= 8; nth++) {
          const run = yield* runOnVirtualTime(
            runMigration(group, {
              destination: {
                gpu0: [{ _tag: "FailArc", from: "STOP", to: "RESUMING" }],
                gpu1: [{ _tag: "HangArc", from: "RUNNING_P2P", to: "STOP", nth }]
              }
            }),
            { limitMs: 120_000 }
          )
          expect(run.problems, `gpu1's arc ${nth} hangs`).toEqual([])
          expect(run.owner).toBe("source")
        }
      })
  )
})

describe("fuzz: found by the sessions fuzzer, fixed by issue 12 (quarantine in a failed migration)", () => {
  // The source's recovery used to ask the quarantined device for RUNNING too, be refused, and leave
  // the other devices stopped; issue 12's recovery plans every device but the quarantined ones.
  it("under quarantine, a failed switchover takes every source device back to RUNNING but the quarantined one", () =>
    Effect.runPromise(
      runOnVirtualTime(
        Effect.gen(function* () {
          const run = yield* runMigration(
            {
              devices: [
                { id: "gpu0", kind: "pci", flags: 7 },
                { id: "gpu1", kind: "pci", flags: 7 }
              ],
              topology: "none"
            },
            {
              policy: "quarantine",
              precopy: false,
              source: { gpu0: [{ _tag: "FailArc", from: "RUNNING_P2P", to: "STOP", leaveIn: "error" }] }
            }
          )
          expect(run.problems).toEqual([])
          expect(run.owner).toBe("source")
        }),
        { limitMs: 120_000 }
      ).pipe(Effect.provide(TestClock.layer()))
    ))

  // Found by the sessions fuzzer: once committed, a failed resume arc made the destination reset
  // and park its devices, discarding the only state that may run. Committed, it tries again.
  for (const times of [1, "always"] as const)
    it(`committed, a destination resume arc that fails ${times === 1 ? "once is tried again" : "every time gives the group back to the source"}`, () =>
      Effect.runPromise(
        runOnVirtualTime(
          Effect.gen(function* () {
            const run = yield* runMigration(
              {
                devices: [
                  { id: "pci0", kind: "pci", flags: 7 },
                  { id: "pci1", kind: "pci", flags: 3 }
                ],
                topology: "shared-iommu"
              },
              {
                policy: "reset",
                precopy: false,
                destination: {
                  pci1: [{ _tag: "FailArc", from: "STOP", to: "RUNNING_P2P", leaveIn: "original", code: "EIO", times }]
                }
              }
            )
            expect(run.problems).toEqual([])
            expect(run.owner).toBe(times === 1 ? "destination" : "source")
          }),
          { limitMs: 120_000 }
        ).pipe(Effect.provide(TestClock.layer()))
      ))
})
