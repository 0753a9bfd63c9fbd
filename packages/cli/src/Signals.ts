import { Context, Deferred, Effect, Exit, Fiber, type Scope } from "effect"

/**
 * How the CLI stops on a signal (the rule, written once):
 * - The first SIGINT or SIGTERM interrupts what the command is doing. A command that moves
 *   devices takes the signal itself (`untilSignal`): its work is interrupted, which rolls the
 *   devices back under the safety rule, and the command then reports what was done (the final
 *   states) and exits 128 + the signal's number. Any other command is simply interrupted.
 * - The process exits within `stopBoundMs` of the first signal, whatever is still running.
 * - A second signal exits at once, saying what state may be left (`atRisk`).
 */

/** The signals that ask the CLI to stop. */
export type StopSignal = "SIGINT" | "SIGTERM"

/**
 * Runs a session to its exit: the trace ends and `keep` receives the exit however the session
 * ends, an interrupt included (what `untilSignal` returns after a signal says nothing of it; the kept exit does).
 */
export const settled = <A, E, R>(
  session: Effect.Effect<A, E, R>,
  trace: { readonly end: () => void } | undefined,
  keep: (exit: Exit.Exit<A, E>) => void
): Effect.Effect<Exit.Exit<A, E>, never, R> =>
  session.pipe(
    Effect.onExit((e) =>
      Effect.sync(() => {
        trace?.end()
        keep(e)
      })
    ),
    Effect.exit
  )

/** The exit code after a signal: 128 + its number, as a shell reports it. */
export const signalExitCode: Readonly<Record<StopSignal, 130 | 143>> = { SIGINT: 130, SIGTERM: 143 }

/** How long the process may take to stop after the first signal before it exits regardless. */
export const stopBoundMs = 10_000

/** What a command can learn of and say about the signals the process receives. */
export interface SignalsShape {
  /** Completes with the first signal, once received (never, when nothing delivers signals). */
  readonly received: Effect.Effect<StopSignal>
  /**
   * While the scope is open, the first signal is the command's to handle (`untilSignal`): it does
   * not interrupt the command. `risk` says what an exit at the second signal may leave behind.
   */
  readonly handle: (risk: string) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * The signals of the process the CLI runs in. The default receives none, so a CLI run in a test
 * or a library never stops on its own; the binary provides the process's (`makeProcessSignals`).
 */
export const Signals = Context.Reference<SignalsShape>("@lockstep/cli/Signals", {
  defaultValue: () => ({ received: Effect.never, handle: () => Effect.void })
})

/** How work run `untilSignal` ended: on its own, or interrupted by a signal (after its rollback). */
export type UntilSignal<A, E> =
  | { readonly _tag: "Done"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Interrupted"; readonly signal: StopSignal; readonly exit: Exit.Exit<A, E> }

/**
 * Runs `effect` until it ends or a signal arrives. On a signal, interrupts it and waits for it
 * to finish (its own finalizers and rollback run), then answers `Interrupted` with how it ended.
 * `risk` says what the process may leave behind if a second signal cuts the rollback short.
 */
export const untilSignal = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  risk: string
): Effect.Effect<UntilSignal<A, E>, never, R> =>
  Effect.scoped(
    Effect.gen(function* () {
      const signals = yield* Signals
      yield* signals.handle(risk)
      const fiber = yield* Effect.forkChild(effect)
      const signal = yield* Effect.raceFirst(
        Effect.as(Fiber.await(fiber), undefined),
        Effect.map(signals.received, (s): StopSignal | undefined => s)
      )
      if (signal === undefined) return { _tag: "Done" as const, exit: yield* Fiber.await(fiber) }
      yield* Fiber.interrupt(fiber)
      return { _tag: "Interrupted" as const, signal, exit: yield* Fiber.await(fiber) }
    })
  )

/** Signals a test or an embedding program delivers by hand: `send` acts as a signal would. */
export interface ManualSignals {
  readonly signals: SignalsShape
  /** Delivers a signal: completes `received` (the first one only). */
  readonly send: (signal: StopSignal) => void
  /** What a second signal would say may be left, or `undefined` when no command holds the signal. */
  readonly risk: () => string | undefined
}

/**
 * Signals delivered by `send`; `onUnhandled` is told of a signal that arrives while no command
 * holds it (the binary interrupts the whole run then).
 */
export const makeSignals = (onUnhandled: (signal: StopSignal) => void = () => {}): Effect.Effect<ManualSignals> =>
  Effect.gen(function* () {
    const first = yield* Deferred.make<StopSignal>()
    const risks: Array<string> = []
    const signals: SignalsShape = {
      received: Deferred.await(first),
      handle: (risk) =>
        Effect.acquireRelease(
          Effect.sync(() => risks.push(risk)),
          () =>
            Effect.sync(() => {
              const at = risks.lastIndexOf(risk)
              if (at >= 0) risks.splice(at, 1)
            })
        ).pipe(Effect.asVoid)
    }
    return {
      signals,
      send: (signal) => {
        const held = risks.length > 0
        Deferred.doneUnsafe(first, Exit.succeed(signal))
        if (!held) onUnhandled(signal)
      },
      risk: () => risks.at(-1)
    }
  })
