/*
 * A judge owes nothing to what it judges (the project's rule, issue 16): the reference model in
 * test/model and the fuzzers' oracle may name the packages' types, but run none of the code of
 * the planner, the executor or the topology (`@lockstep/coordinator`, `@lockstep/group`), and
 * reach into no package's sources by path. Type-only imports are erased before anything runs.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"

const test = fileURLToPath(new URL("../", import.meta.url))
const judges = [
  ...readdirSync(join(test, "model"))
    .filter((name) => name.endsWith(".ts") && !name.endsWith(".test.ts"))
    .map((name) => join("model", name)),
  join("fuzz", "Oracle.ts")
]

/** Every import (and re-export) statement of a source: whether it is type-only, and what it names. */
const importsOf = (source: string) =>
  [...source.matchAll(/^(?:import|export)\s+(type\s+)?([\s\S]*?)\s+from\s+"([^"]+)"/gm)].map((m) => ({
    typeOnly: m[1] !== undefined,
    names: (m[2] ?? "")
      .replace(/[{}]/g, "")
      .split(",")
      .map((n) => n.trim())
      .filter((n) => n !== ""),
    from: m[3] ?? ""
  }))

const judged = ["@lockstep/coordinator", "@lockstep/group"]

describe("the judges", () => {
  it("are the model's modules and the oracle", () => {
    expect(judges).toContain(join("model", "Kernel.ts"))
    expect(judges).toContain(join("fuzz", "Oracle.ts"))
  })

  it.each(judges)("%s runs no code of the planner, executor or topology, and no package source by path", (file) => {
    const imports = importsOf(readFileSync(join(test, file), "utf8"))
    // Every judge names something: a file whose statements this reader missed would pass unread.
    expect(imports.length).toBeGreaterThan(0)
    for (const i of imports) {
      expect(i.from, `${file} reaches into a package by path`).not.toMatch(/packages\//)
      if (!judged.includes(i.from) || i.typeOnly) continue
      // `import { type A, type B } from …` is type-only too.
      const values = i.names.filter((n) => !n.startsWith("type "))
      expect(values, `${file} imports values from ${i.from}`).toEqual([])
    }
  })
})
