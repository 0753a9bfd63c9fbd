import type { GroupRuntime } from "@lockstep/coordinator"
import { decodeGroup } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { attachVfioUserDevices, type VfioUserDeviceInvalid } from "@lockstep/vfio-user"
import { Cause, Clock, Data, Effect, Exit, Result, Scope } from "effect"
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
 * A device that answered but is refused (its server reports other flags than the document
 * declares, or its entry is malformed), as opposed to one that did not answer: waiting does not
 * change that, so it is never retried.
 */
const mismatchOf = (id: string, error: VfioUserDeviceInvalid): DevicesUnavailable | VfioUserDeviceInvalid =>
  error.path.endsWith(".socket")
    ? error
    : new DevicesUnavailable({ reason: `device ${id} does not match: ${error.reason}` })

/**
 * Connects to every device of a VM over vfio-user, all at once (each server's flags checked
 * against the document), and answers the group runtime; the connections close with `scope`.
 * A device serves one driver at a time, so while an earlier attempt still holds one this waits:
 * it retries until `deadlineMs` has passed. A device whose flags do not match fails at once.
 */
export const attach = (document: unknown, template: string, scope: Scope.Scope, deadlineMs = attachDeadlineMs) =>
  Effect.gen(function* () {
    const raw = document as { readonly devices?: ReadonlyArray<Record<string, unknown>> }
    const served = (raw.devices ?? []).map((d) => ({
      ...d,
      id: d.id,
      vfioUser: { socket: deviceSocket(template, String(d.id)) }
    }))
    const deadline = (yield* Clock.currentTimeMillis) + deadlineMs
    for (;;) {
      const child = yield* Scope.fork(scope)
      const attached = yield* Effect.exit(
        Effect.forEach(
          served,
          (d) =>
            attachVfioUserDevices({ devices: [d] }, { timeoutMs: 2_000 }).pipe(
              Effect.mapError((e) => mismatchOf(String(d.id), e))
            ),
          { concurrency: "unbounded" }
        ).pipe(Scope.provide(child))
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
      const mismatch = Cause.findError(attached.cause)
      if (Result.isSuccess(mismatch) && mismatch.success instanceof DevicesUnavailable) return yield* mismatch.success
      if ((yield* Clock.currentTimeMillis) > deadline)
        return yield* new DevicesUnavailable({ reason: `devices unreachable: ${why(attached.cause)}` })
      yield* Effect.sleep(200)
    }
  })
