import { describe } from "@effect/vitest"
import { fuzzInCi } from "./Fuzzers.js"

describe("fuzz: the migration sessions, faults on either side, the channel cut, driven by fast-check's scheduler", () => {
  fuzzInCi("sessions")
})
