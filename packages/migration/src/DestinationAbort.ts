import { Cause, Effect, Exit, Option } from "effect"
import { decideFromJournal } from "./DestinationCommit.js"
import { type DestinationContext, nextMessageTagged, readToEnd } from "./DestinationContext.js"
import { transitionOptions } from "./GroupTransition.js"
import { CommitInDoubt, MigrationFailed, type PeerAborted } from "./MigrationError.js"
import { leftInPlace, type Recovered, recoverGroup, recoveryFields, untouched } from "./Recovery.js"
import { hangUpOn } from "./RecoveryGuard.js"
import { faultOfCause, isChannelCause, originOf, SessionFault } from "./SessionFault.js"
import { abortedMessage, peerAbortedOf, send } from "./SessionMessage.js"

/**
 * Abort: the session failed with `failed`. Reset what was touched, park it in STOP, and only
 * then tell the source: never both running. Stopped after the vote without the decision, the
 * journal settles it or the devices wait; committed, they are left where they are.
 */
export const abort = (
  ctx: DestinationContext,
  failed: Cause.Cause<SessionFault>
): Effect.Effect<never, MigrationFailed> =>
  Effect.gen(function* () {
    const { s, o } = ctx
    const failure = faultOfCause(ctx.log, failed)
    const { cause, phase } = yield* named(ctx, failure)
    const inDoubt = cause._tag === "CommitInDoubt"
    const touchedBefore = ctx.touched()
    // In doubt, the validated devices wait in STOP: neither reset nor resumed until the journal is read.
    // Committed, they hold the only state that may run: left where they are, required RUNNING.
    const outcome: Recovered = !touchedBefore
      ? yield* untouched(ctx.runtime)
      : s.committed && !s.givenBack
        ? yield* leftInPlace(ctx.runtime, "RUNNING", cause.message)
        : inDoubt
          ? yield* leftInPlace(ctx.runtime, "STOP")
          : yield* recoverGroup(ctx.runtime, {
              policy: o.errorPolicy,
              home: "STOP",
              resetEvery: true,
              resetTimeoutMs: o.arcTimeoutMs,
              transition: transitionOptions(o, "destination", "park", undefined)
            })
    ctx.emit({ _tag: "Recovered", side: "destination", ok: outcome.complete, states: outcome.states, at: ctx.now() })
    yield* tellSource(ctx, new SessionFault({ cause, phase }))
    // Let the source hang up first, so nothing it sent is cut off by our close.
    // Whatever it still sends is of no use now; only its hang-up is awaited, briefly.
    yield* readToEnd(ctx).pipe(Effect.ignore, Effect.timeoutOption(o.closeGraceMs))
    yield* ctx.transport.close
    ctx.log.end()
    return yield* new MigrationFailed({
      side: "destination",
      phase,
      origin: originOf("destination", cause),
      cause,
      migration: s.migration,
      ...recoveryFields(touchedBefore, outcome)
    })
  })

/**
 * The failure as it is reported: a channel failure that echoes the source's abort takes the
 * source's reason; one after the vote without the decision is settled by the journal, or is in doubt.
 */
const named = (
  ctx: DestinationContext,
  failure: SessionFault
): Effect.Effect<{ readonly cause: SessionFault["cause"]; readonly phase: SessionFault["phase"] }> =>
  Effect.gen(function* () {
    const { s } = ctx
    let { cause, phase } = failure
    // A channel failure is often the echo of the source aborting (it says why, then closes):
    // read what it sent, briefly, and prefer its own reason.
    if (isChannelCause(cause)) {
      const told = yield* abortedBySource(ctx).pipe(Effect.timeoutOption(ctx.o.closeGraceMs))
      if (Option.isSome(told) && told.value !== undefined) {
        cause = told.value
        phase = told.value.phase
      }
    }
    // Stopped after the vote without learning the decision (interrupted, say): never reset a
    // group the source may have committed to; the journal settles it, or the devices wait.
    if (s.voted && !s.decided && cause._tag !== "PeerAborted" && cause._tag !== "CommitInDoubt") {
      const migration = s.migration ?? ""
      const settled = yield* Effect.exit(decideFromJournal(ctx, migration, failure))
      const doubt = Exit.isFailure(settled) ? Option.getOrUndefined(Cause.findErrorOption(settled.cause)) : undefined
      if (doubt?.cause._tag === "CommitInDoubt") cause = doubt.cause
      else if (Exit.isSuccess(settled))
        cause = new CommitInDoubt({
          migration,
          reason: `${cause.message}; the source's journal says COMMIT: this group must be resumed`
        })
    }
    return { cause, phase }
  })

/** Tells the source why (before COMMIT), or only ends this direction. */
const tellSource = (ctx: DestinationContext, failure: SessionFault): Effect.Effect<void> =>
  Effect.gen(function* () {
    const { cause, phase } = failure
    const warn = (reason: string) => ctx.emit({ _tag: "Warning", side: "destination", reason, at: ctx.now() })
    const writer = ctx.s.writer
    if (writer === undefined) return
    // After COMMIT there is nothing to abort: the group was offered back (`giveBack`), or the source
    // only hears that it does not run.
    const inDoubt = cause._tag === "CommitInDoubt"
    const tell = cause._tag !== "PeerAborted" && cause._tag !== "HandshakeRefused" && !inDoubt && !ctx.s.committed
    yield* hangUpOn("source", writer.end, tell ? send(writer, abortedMessage(phase, cause)) : undefined, warn)
  })

/** The source's `Aborted`, if it is among what is left to read (undefined at the end or on an error). */
const abortedBySource = (ctx: DestinationContext): Effect.Effect<PeerAborted | undefined> =>
  Effect.map(Effect.option(nextMessageTagged(ctx, "Aborted")), (aborted) =>
    Option.isNone(aborted) || aborted.value === undefined ? undefined : peerAbortedOf("source", aborted.value)
  )
