import { type Cause, Effect, Exit } from "effect"
import type { Side } from "./Phase.js"
import { describeCause, type SessionFault } from "./SessionFault.js"

/*
 * What keeps a failed side safe: recovery that runs whatever ended the phases, an interrupt
 * included, and a hang-up that never turns a failure to tell the peer into a second failure.
 */

/**
 * Runs a session's phases; on a failure (an interruption included) runs `onFailure` with its
 * cause, uninterruptibly: a side that failed always recovers its group and says why.
 */
export const recovering = <A, B, E, R1, R2>(
  phases: Effect.Effect<A, SessionFault, R1>,
  onFailure: (cause: Cause.Cause<SessionFault>) => Effect.Effect<B, E, R2>
): Effect.Effect<A | B, E, R1 | R2> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.exit(restore(phases)), (exit) =>
      Exit.isSuccess(exit) ? Effect.succeed<A | B>(exit.value) : onFailure(exit.cause)
    )
  )

/**
 * Ends this side's direction of the channel, telling the peer why first when `say` is given (the
 * peer's `Aborted`, say). A failure here changes nothing: it is only warned about.
 */
export const hangUpOn = <E1, E2>(
  peer: Side,
  end: Effect.Effect<void, E1>,
  say: Effect.Effect<void, E2> | undefined,
  warn: (reason: string) => void
): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (say !== undefined) {
      const told = yield* Effect.exit(Effect.andThen(say, end))
      if (Exit.isFailure(told)) warn(`the ${peer} could not be told: ${describeCause(told.cause)}`)
    } else {
      const ended = yield* Effect.exit(end)
      if (Exit.isFailure(ended)) warn(`could not end the stream to the ${peer}: ${describeCause(ended.cause)}`)
    }
  })
