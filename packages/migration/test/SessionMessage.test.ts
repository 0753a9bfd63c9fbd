/*
 * The session protocol's messages as they cross the wire: each control frame's JSON payload
 * decodes back to the message that was sent, and what an older peer sends is still understood.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { decodeMessage, encodeMessage, type SessionMessage } from "../src/SessionMessage.js"

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

const roundTrip = (message: SessionMessage) => {
  const { kind, payload } = encodeMessage(message)
  return {
    kind,
    payload: JSON.parse(new TextDecoder().decode(payload)),
    back: decodeMessage({ _tag: "Control", kind, device: undefined, payload })
  }
}

describe("session messages on the wire", () => {
  it("a refusal of a device the destination does not have is NoSuchDevice, not a stream error's tag", () => {
    const refused: SessionMessage = { _tag: "Refused", refusals: [{ _tag: "NoSuchDevice", device: "gpu9" }] }
    const { kind, payload, back } = roundTrip(refused)
    expect(kind).toBe("refuse")
    expect(payload).toEqual({ _tag: "Refused", refusals: [{ _tag: "NoSuchDevice", device: "gpu9" }] })
    expect(back).toEqual(Result.succeed(refused))
  })

  it("a refusal tagged UnknownDevice (a peer from before the rename) is read as NoSuchDevice", () => {
    const old = json({ _tag: "Refused", refusals: [{ _tag: "UnknownDevice", device: "gpu9" }] })
    expect(decodeMessage({ _tag: "Control", kind: "refuse", device: undefined, payload: old })).toEqual(
      Result.succeed({ _tag: "Refused", refusals: [{ _tag: "NoSuchDevice", device: "gpu9" }] })
    )
  })
})
