import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const readme = readFileSync(join(root, "README.md"), "utf8")

describe("README's CLI examples", () => {
  it("name files that exist, so that each can be run as written from the repository", () => {
    const commands = [...readme.matchAll(/^\$ npx lockstep (check|plan|simulate) (\S+)/gm)]
    expect(commands.length).toBeGreaterThanOrEqual(3)
    for (const [line, , file = ""] of commands) expect(existsSync(join(root, file)), line).toBe(true)
  })
})
