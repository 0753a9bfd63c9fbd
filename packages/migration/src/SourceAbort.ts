import { type Cause, Deferred, Effect, Exit, type Fiber, Option } from "effect"
import type { SourceSummary } from "./Events.js"
import { transitionOptions } from "./GroupTransition.js"
import { MigrationFailed, PeerBusy } from "./MigrationError.js"
import { leftInPlace, type Recovered, recoverGroup, recoveryFields, untouched } from "./Recovery.js"
import { hangUpOn } from "./RecoveryGuard.js"
import { describeCause, faultIn, faultOfCause, isChannelCause, originOf, type SessionFault } from "./SessionFault.js"
import { abortedMessage, send } from "./SessionMessage.js"
import { hangUp, type SourceContext } from "./SourceContext.js"
import { finish } from "./SourceFinish.js"

/**
 * Abort: the session failed with `cause`. The failure is named (a busy destination is not a
 * silent one; a channel failure that echoes the destination's abort takes its reason), the
 * journal's decision settled (ABORT wins unless COMMIT is already recorded, and then the
 * migration stands), and the group rolled back unless it stands.
 */
export const abort = (
  ctx: SourceContext,
  listener: Fiber.Fiber<void>,
  cause: Cause.Cause<SessionFault>
): Effect.Effect<SourceSummary, MigrationFailed> =>
  Effect.gen(function* () {
    const { s, o } = ctx
    let failure = faultOfCause(ctx.log, cause)
    // A wait that timed out while the destination said it was busy with a step: it is working,
    // not silent, and the channel is fine; the timeout is too short for that step.
    const busy = s.peerBusy
    if (
      busy !== undefined &&
      (failure.cause._tag === "PeerSilent" ||
        (failure.cause._tag === "TransportError" && failure.cause.reason._tag === "TransportTimeout"))
    )
      failure = faultIn(ctx.log, new PeerBusy({ peer: "destination", step: busy, timeoutMs: o.peerTimeoutMs }))
    // A channel failure is often the echo of the destination aborting: prefer its own reason.
    if (isChannelCause(failure.cause)) {
      const told = yield* Deferred.await(ctx.peer.failure).pipe(Effect.flip, Effect.timeoutOption(o.closeGraceMs))
      if (Option.isSome(told) && told.value._tag === "PeerAborted") failure = faultIn(ctx.log, told.value)
    }
    yield* settleDecision(ctx, failure)
    if (s.committed && failure.cause._tag !== "PeerAborted") return yield* finish(ctx, listener, undefined)
    return yield* recover(ctx, listener, failure)
  })

/**
 * A journal write can fail after landing: before rolling back, settle the decision. ABORT wins
 * unless COMMIT is already recorded, and then the migration stands (and the destination is told).
 */
const settleDecision = (ctx: SourceContext, failure: SessionFault): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { s, o, emit, now } = ctx
    if (s.committed || !s.begun || s.migration === undefined) return
    const decided = yield* Effect.exit(o.journal.decide(s.migration, "abort", failure.cause.message))
    if (Exit.isFailure(decided)) {
      emit({ _tag: "Warning", side: "source", reason: `journal: ${describeCause(decided.cause)}`, at: now() })
      return
    }
    emit({ _tag: "DecisionRecorded", side: "source", migration: s.migration, decision: decided.value, at: now() })
    if (decided.value !== "committed") return
    s.committed = true
    const writer = s.writer
    const told = writer === undefined ? undefined : yield* Effect.exit(send(writer, { _tag: "Committed" }))
    if (told !== undefined && Exit.isFailure(told))
      emit({
        _tag: "Warning",
        side: "source",
        reason: `COMMIT stands but could not be sent: ${describeCause(told.cause)}`,
        at: now()
      })
  })

/** Rolls the group back to RUNNING after telling the destination why; answers the one error. */
const recover = (
  ctx: SourceContext,
  listener: Fiber.Fiber<void>,
  faultValue: SessionFault
): Effect.Effect<never, MigrationFailed> =>
  Effect.gen(function* () {
    const { s, o, emit, now, runtime, link } = ctx
    const { cause, phase } = faultValue
    const touchedBefore = ctx.touched()
    const warn = (reason: string) => emit({ _tag: "Warning", side: "source", reason, at: now() })
    const migration = s.migration
    let problem: string | undefined
    const renounced = s.committed && cause._tag === "PeerAborted"
    if (renounced && migration !== undefined) {
      // The destination failed to resume and offers the group back: it resets its devices once told.
      const recorded = yield* Effect.exit(o.journal.renounce(migration, cause.message))
      if (Exit.isFailure(recorded))
        problem = `the journal could not record that the destination renounced: ${describeCause(recorded.cause)}`
    }
    const writer = s.writer
    if (renounced && problem === undefined && writer !== undefined) {
      // Confirm: the destination resets its devices only once it knows the source owns the group.
      const confirmed = yield* Effect.exit(send(writer, { _tag: "Renounced" }).pipe(Effect.andThen(link.end)))
      if (Exit.isFailure(confirmed))
        warn(`the destination could not be told that the group is back: ${describeCause(confirmed.cause)}`)
    } else {
      const tell = cause._tag !== "PeerAborted" && cause._tag !== "HandshakeRefused" && writer !== undefined
      yield* hangUpOn("destination", link.end, tell ? send(writer, abortedMessage(phase, cause)) : undefined, warn)
    }
    // Without a recorded renunciation the journal still says COMMIT: the source must stay stopped.
    const outcome: Recovered = !touchedBefore
      ? yield* untouched(runtime)
      : problem !== undefined
        ? yield* leftInPlace(runtime, "RUNNING", problem)
        : yield* recoverGroup(runtime, {
            policy: o.errorPolicy,
            home: "RUNNING",
            resetEvery: false,
            resetTimeoutMs: o.arcTimeoutMs,
            transition: transitionOptions(o, "source", "rollback", undefined)
          })
    emit({ _tag: "Recovered", side: "source", ok: outcome.complete, states: outcome.states, at: now() })
    yield* hangUp(ctx, listener)
    return yield* new MigrationFailed({
      side: "source",
      phase,
      origin: originOf("source", cause),
      cause,
      migration,
      ...recoveryFields(touchedBefore, outcome)
    })
  })
