import type { EventSink, MigrationEvent } from "@lockstep/migration"
import { formatBytes, formatEstimateMs, formatMs, formatStates } from "./Format.js"

/** Which side's events a progress display follows: both (a simulation), or one process's own. */
export type ProgressOf = "both" | "source" | "destination"

/**
 * Progress lines for a terminal, one per step that takes time: the handshake, pre-copy rounds
 * with their bytes and the downtime estimate, the switchover, the drain, the destination
 * validating and resuming, a recovery. Times are milliseconds from the first event, on the
 * clock the migration runs on (virtual in a simulation, real in `migrate`).
 */
export const progressLines = (print: (line: string) => void, of: ProgressOf = "both"): EventSink => {
  let t0: number | undefined
  let sent = 0
  const say = (at: number, text: string) => {
    t0 ??= at
    print(`lockstep: ${`${(at - t0).toFixed(1)} ms`.padStart(9)}  ${text}`)
  }
  let round: Extract<MigrationEvent, { _tag: "RoundDone" }> | undefined
  return (event) => {
    switch (event._tag) {
      case "HandshakeDone":
        if (event.side === "source" && of !== "destination")
          say(event.at, "handshake done: the destination accepted the group")
        if (event.side === "destination" && of === "destination")
          say(event.at, `handshake done: the source's group is accepted (migration ${event.migration})`)
        return
      case "RoundDone":
        sent += event.bytes
        round = event
        return
      case "EstimateUpdated": {
        const bytes =
          round === undefined
            ? ""
            : `${formatBytes(round.bytes)} in ${formatMs(round.durationMs)} (${formatBytes(sent)} so far), `
        const waiting =
          event.unacknowledged.length === 0
            ? ""
            : `, waiting for the switchover-ack of ${event.unacknowledged.join(", ")}`
        say(
          event.at,
          `pre-copy round ${event.round}: ${bytes}downtime estimate ${formatEstimateMs(event.estimate.totalMs)} (limit ${formatMs(event.downtimeLimitMs)})${waiting}`
        )
        return
      }
      case "PrecopyReinitialised":
        say(
          event.at,
          `${event.device} reported new initial data (REINIT, ${formatBytes(event.initialBytes)}): sent again, and the switchover waits for its acknowledgement`
        )
        return
      case "SwitchoverWithdrawn":
        say(event.at, `switchover withdrawn: ${event.why}`)
        return
      case "SwitchoverDecided":
        say(event.at, `switchover (${event.reason}): the source group goes to STOP_COPY; ${event.why}`)
        return
      case "PhaseEnded":
        if (event.side === "source" && event.phase === "drain") say(event.at, "every device drained")
        if (event.side === "destination" && event.phase === "validate")
          say(event.at, "the destination validated the data")
        return
      case "Resumed":
        say(event.at, `the destination group is RUNNING (resumed in ${formatMs(event.resumeMs)})`)
        return
      case "Recovered":
        say(event.at, `the ${event.side} ${event.ok ? "recovered" : "did NOT recover"}: ${formatStates(event.states)}`)
        return
      default:
        return
    }
  }
}
