import { describe, expect, it } from "@effect/vitest"
import {
  ArcTimedOut,
  BadDependency,
  DependencyCycle,
  Overlap,
  PathRefused,
  PlanError,
  StateUnreadable,
  TransitionFailed,
  TransitionInterrupted,
  TransitionRefused,
  UnsafePlan
} from "@lockstep/coordinator"
import { ArcFailed, DeviceError } from "@lockstep/device"
import { FsmError, UnsupportedState } from "@lockstep/fsm"
import { Schema } from "effect"

/**
 * A failed or refused transition is sent to the peer in an abort: as JSON it must come back as
 * the same typed error, its cause and reason included, not as a tag and a sentence.
 */
const overTheWire = <A, I>(schema: Schema.Codec<A, I>, value: A): A => {
  const json = Schema.fromJsonString(schema)
  const text = Schema.encodeSync(json)(value)
  expect(typeof text).toBe("string")
  return Schema.decodeSync(json)(text)
}

describe("transition errors as JSON", () => {
  it("a failure keeps its device error, the arc and every device's final state", () => {
    const failed = new TransitionFailed({
      cause: DeviceError.arcFailed({
        device: "gpu1",
        arc: { from: "RUNNING_P2P", to: "STOP" },
        code: "EIO",
        reason: "injected",
        stateAfter: "ERROR"
      }),
      device: "gpu1",
      arc: { from: "RUNNING_P2P", to: "STOP" },
      startStates: { gpu0: "RUNNING", gpu1: "RUNNING" },
      finalStates: { gpu0: "RUNNING", gpu1: "UNKNOWN" },
      rolledBack: false,
      quarantined: [],
      held: ["gpu0"],
      rollbackCause: new ArcTimedOut({ device: "gpu0", arc: { from: "RUNNING_P2P", to: "RUNNING" }, timeoutMs: 50 })
    })
    const back = overTheWire(TransitionFailed, failed)
    expect(back).toBeInstanceOf(TransitionFailed)
    expect(back.cause).toBeInstanceOf(DeviceError)
    const reason = back.cause._tag === "DeviceError" ? back.cause.reason : undefined
    expect(reason).toBeInstanceOf(ArcFailed)
    expect(reason).toMatchObject({ _tag: "ArcFailed", device: "gpu1", code: "EIO", stateAfter: "ERROR" })
    expect(back.rollbackCause).toBeInstanceOf(ArcTimedOut)
    expect(back.finalStates).toEqual({ gpu0: "RUNNING", gpu1: "UNKNOWN" })
    expect(back.held).toEqual(["gpu0"])
    expect(back.message).toBe(failed.message)

    // Interrupted before any arc: no device, no arc, no rollback failure; JSON drops those keys.
    const interrupted = new TransitionFailed({
      ...failed,
      cause: new TransitionInterrupted(),
      device: undefined,
      arc: undefined,
      rollbackCause: undefined
    })
    const again = overTheWire(TransitionFailed, interrupted)
    expect(again.cause).toBeInstanceOf(TransitionInterrupted)
    expect([again.device, again.arc, again.rollbackCause]).toEqual([undefined, undefined, undefined])
  })

  it("a refusal keeps the planner's reason, down to the kernel's", () => {
    const refused = new TransitionRefused({
      cause: new PlanError({
        reason: new PathRefused({
          device: "nic0",
          from: "RUNNING",
          to: "PRE_COPY",
          cause: new FsmError({ reason: new UnsupportedState({ state: "PRE_COPY", role: "to", flags: 1 }) })
        })
      })
    })
    const back = overTheWire(TransitionRefused, refused)
    expect(back.cause).toBeInstanceOf(PlanError)
    const reason = back.cause._tag === "PlanError" ? back.cause.reason : undefined
    expect(reason).toBeInstanceOf(PathRefused)
    expect(reason?._tag === "PathRefused" ? reason.cause.reason : undefined).toBeInstanceOf(UnsupportedState)
    expect(back.message).toBe(refused.message)

    const cycle = new TransitionRefused({
      cause: new PlanError({
        reason: new DependencyCycle({
          cycle: [
            { device: "a", from: "RUNNING", to: "STOP" },
            { device: "b", from: "RUNNING", to: "STOP" }
          ]
        })
      })
    })
    expect(overTheWire(TransitionRefused, cycle).message).toBe(cycle.message)
    expect(
      overTheWire(TransitionRefused, new TransitionRefused({ cause: new StateUnreadable({ device: "x" }) })).cause
    ).toBeInstanceOf(StateUnreadable)
  })

  it("an unsafe plan keeps each violation, the arcs it names included", () => {
    const arc = {
      _tag: "Arc",
      id: "a1",
      device: "nic0",
      from: "RUNNING",
      to: "RUNNING_P2P",
      after: [],
      level: 1
    } as const
    const unsafe = new UnsafePlan({
      violations: [
        new Overlap({
          edge: ["nic0", "gpu0"],
          initiator: { opens: undefined, closes: arc },
          target: { opens: undefined, closes: undefined }
        }),
        new BadDependency({ node: "a2", reason: "the id is used twice" })
      ],
      omitted: 3
    })
    const back = overTheWire(UnsafePlan, unsafe)
    expect(back.violations[0]).toBeInstanceOf(Overlap)
    expect(back.violations[0]?._tag === "Overlap" ? back.violations[0].initiatorArc : undefined).toEqual(arc)
    expect(back.violations[1]).toBeInstanceOf(BadDependency)
    expect(back.message).toBe(unsafe.message)
  })
})
