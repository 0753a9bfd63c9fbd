import type { GroupRuntime } from "@lockstep/coordinator"
import { decodeGroup } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { attachVfioUserDevices } from "@lockstep/vfio-user"
import { Cause, Clock, Data, Effect, Exit, Scope } from "effect"
import { deviceSocket } from "./StateDirectory.js"

/**
 * A VM's devices on one host, reached over vfio-user: its group document, with each device's
 * socket filled in from the host's template.
 */

/** The devices could not be attached: why, as a sentence. */
export class DevicesUnavailable extends Data.TaggedError("DevicesUnavailable")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** How long an attempt waits for devices held by an earlier one, or not served yet. */
export const attachDeadlineMs = 30_000

const why = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/**
 * Connects to every device of a VM over vfio-user, all at once (each server's flags checked
 * against the document), and answers the group runtime; the connections close with `scope`.
 * A device serves one driver at a time, so while an earlier attempt still holds one this waits:
 * it retries until `deadlineMs` has passed.
 */
export const attach = (document: unknown, template: string, scope: Scope.Scope, deadlineMs = attachDeadlineMs) =>
  Effect.gen(function* () {
    const raw = document as { readonly devices?: ReadonlyArray<Record<string, unknown>> }
    const served = (raw.devices ?? []).map((d) => ({
      ...d,
      vfioUser: { socket: deviceSocket(template, String(d.id)) }
    }))
    const deadline = (yield* Clock.currentTimeMillis) + deadlineMs
    for (;;) {
      const child = yield* Scope.fork(scope)
      const attached = yield* Effect.exit(
        Effect.forEach(served, (d) => attachVfioUserDevices({ devices: [d] }, { timeoutMs: 2_000 }), {
          concurrency: "unbounded"
        }).pipe(Scope.provide(child))
      )
      if (Exit.isSuccess(attached)) {
        const devices = new Map<string, Device>(attached.value.flatMap((a) => [...a.devices]))
        const documents = attached.value.flatMap((a) => (a.document as { devices: ReadonlyArray<unknown> }).devices)
        const group = yield* decodeGroup({ ...raw, devices: documents }).pipe(
          Effect.mapError((e) => new DevicesUnavailable({ reason: e.message }))
        )
        return { group, devices } satisfies GroupRuntime
      }
      yield* Scope.close(child, Exit.void)
      if ((yield* Clock.currentTimeMillis) > deadline)
        return yield* new DevicesUnavailable({ reason: `devices unreachable: ${why(attached.cause)}` })
      yield* Effect.sleep(200)
    }
  })
