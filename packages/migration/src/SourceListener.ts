import type { FrameReader } from "@lockstep/stream"
import { Deferred, Effect, Option, Queue, Result } from "effect"
import { ProtocolViolation } from "./MigrationError.js"
import { decodeMessage, peerAbortedOf } from "./SessionMessage.js"
import type { SourceContext } from "./SourceContext.js"

/**
 * Reads what the destination says, in a fiber of its own so that it is heard while the source is
 * busy writing (a destination that aborts stops reading, and a blocked write must not hide it).
 * Each message settles its signal in `ctx.peer`; anything out of protocol fails `peer.failure`.
 */
export const listen = (ctx: SourceContext, reader: FrameReader.FrameReader): Effect.Effect<void> => {
  const { peer, s } = ctx
  const violation = (expected: string, got: string) =>
    Deferred.fail(peer.failure, new ProtocolViolation({ expected, got }))
  return Effect.gen(function* () {
    for (;;) {
      const next = yield* Effect.result(reader.next)
      if (Result.isFailure(next)) return yield* Deferred.fail(peer.failure, next.failure)
      if (Option.isNone(next.success)) {
        if (!Deferred.isDoneUnsafe(peer.resumed))
          yield* violation("the destination's confirmation", "the end of its stream")
        return
      }
      const frame = next.success.value
      if (frame._tag === "StreamEnd") continue
      if (frame._tag !== "Control") return yield* violation("control frames", `a ${frame._tag} frame`)
      const decoded = decodeMessage(frame)
      if (Result.isFailure(decoded)) return yield* violation("a session message", decoded.failure)
      const message = decoded.success
      switch (message._tag) {
        case "Accepted":
        case "Refused":
          yield* Deferred.succeed(peer.answer, message)
          break
        case "InitialDataReceived":
          if (frame.device === undefined) return yield* violation("an acknowledged device", "none")
          yield* Queue.offer(peer.acks, { device: frame.device, resumeEstimateMs: message.resumeEstimateMs })
          break
        case "Busy":
          s.peerBusy = message.done ? undefined : message.step
          if (message.step === "prepare" && message.done) yield* Deferred.succeed(peer.destinationReady, undefined)
          break
        case "Prepared":
          s.peerBusy = undefined
          yield* Deferred.succeed(peer.prepared, message.validateMs)
          break
        case "Resumed":
          yield* Deferred.succeed(peer.resumed, { resumeMs: message.resumeMs, at: ctx.now() })
          break
        case "ProbeAnswer":
          if (!(yield* ctx.probes.answer(message.id, ctx.now())))
            return yield* violation("answers to probes sent", `an answer to probe ${message.id}`)
          break
        case "Aborted":
          // Keep reading to the end of its stream: hanging up on unread bytes would reset the
          // connection under the destination.
          yield* Deferred.fail(peer.failure, peerAbortedOf("destination", message))
          break
        default:
          return yield* violation("a destination's message", message._tag)
      }
    }
  }).pipe(Effect.ensuring(Deferred.succeed(peer.done, undefined)))
}
