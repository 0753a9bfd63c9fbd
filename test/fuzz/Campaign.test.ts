import { describe } from "@effect/vitest"
import { fuzzInCi } from "./Fuzzers.js"

describe("fuzz: campaigns over random groups, faults, timeouts and interruptions", () => {
  fuzzInCi("campaign")
})
