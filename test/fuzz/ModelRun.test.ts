import { describe } from "@effect/vitest"
import { fuzzInCi } from "./Fuzzers.js"

describe("fuzz: model-based command sequences", () => {
  fuzzInCi("model")
})
