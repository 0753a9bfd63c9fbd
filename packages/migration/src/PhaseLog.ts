import type { EventSink } from "./Events.js"
import type { Phase, Side } from "./Phase.js"
import { roundMs } from "./SessionClock.js"

/** Phase bookkeeping: which phase a side is in, how long each took, and the events. */
export class PhaseLog {
  phase: Phase = "handshake"
  private since: number
  readonly durations: Partial<Record<Phase, number>> = {}

  constructor(
    private readonly side: Side,
    private readonly emit: EventSink,
    private readonly now: () => number
  ) {
    this.since = now()
    emit({ _tag: "PhaseStarted", side, phase: this.phase, at: this.since })
  }

  /** Ends the current phase and starts `phase`. */
  enter(phase: Phase): void {
    this.end()
    this.phase = phase
    this.since = this.now()
    this.emit({ _tag: "PhaseStarted", side: this.side, phase, at: this.since })
  }

  /** Ends the current phase (at the end of the session). */
  end(): void {
    if (this.durations[this.phase] !== undefined) return
    const at = this.now()
    this.durations[this.phase] = roundMs(at - this.since)
    this.emit({ _tag: "PhaseEnded", side: this.side, phase: this.phase, at, durationMs: at - this.since })
  }
}
