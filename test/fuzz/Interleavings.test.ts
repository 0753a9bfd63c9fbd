import { describe } from "@effect/vitest"
import { fuzzInCi } from "./Fuzzers.js"

describe("fuzz: interleavings, driven by fast-check's scheduler", () => {
  fuzzInCi("interleavings")
})
