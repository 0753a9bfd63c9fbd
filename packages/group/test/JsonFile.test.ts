import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { describeIssue, readJsonFile } from "@lockstep/group"
import { Effect, Schema } from "effect"

const Settings = Schema.Struct({ port: Schema.Int, host: Schema.String })

layer(NodeFileSystem.layer)("readJsonFile", (it) => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-json-"))
  const file = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  it.effect("decodes the file's JSON with the document's schema", () =>
    Effect.gen(function* () {
      const path = file("ok.json", '{"port": 7300, "host": "a"}')
      expect(yield* readJsonFile(path, Settings)).toEqual({ port: 7300, host: "a" })
    })
  )

  it.effect("a missing file is unreadable, with the system's code", () =>
    Effect.gen(function* () {
      const path = join(dir, "missing.json")
      const { reason } = yield* Effect.flip(readJsonFile(path, Settings))
      expect(reason._tag).toBe("JsonFileUnreadable")
      expect(reason._tag === "JsonFileUnreadable" && reason.code).toBe("ENOENT")
      expect(reason.message.startsWith(`${path}: cannot read the file: `)).toBe(true)
    })
  )

  it.effect("a directory is unreadable", () =>
    Effect.gen(function* () {
      const { reason } = yield* Effect.flip(readJsonFile(dir, Settings))
      expect(reason._tag === "JsonFileUnreadable" && reason.code).toBe("EISDIR")
    })
  )

  it.effect("text that is not JSON names where the parser stopped", () =>
    Effect.gen(function* () {
      // Line 1 is 8 characters and its newline; on line 2 the `2` (character 9 + 4 = 13) stands
      // where a ':' was due.
      const path = file("colon.json", '{"a": 1,\n"b" 2}')
      const { reason } = yield* Effect.flip(readJsonFile(path, Settings))
      expect(reason._tag).toBe("JsonFileNotJson")
      expect(reason.message).toContain(`${path}: not valid JSON: `)
      expect(reason.message).toContain("position 13")
    })
  )

  it.effect("JSON the schema refuses carries the issue, with the path of each problem", () =>
    Effect.gen(function* () {
      const path = file("bad.json", '{"port": "x", "host": 1}')
      const { reason } = yield* Effect.flip(readJsonFile(path, Settings))
      expect(reason._tag).toBe("JsonFileInvalid")
      if (reason._tag !== "JsonFileInvalid") return
      expect(describeIssue(reason.issue).map((p) => p.path)).toEqual(["port", "host"])
      // One line a problem, each naming the file and the path.
      const lines = reason.message.split("\n")
      expect(lines).toHaveLength(2)
      expect(lines[0]?.startsWith(`${path}: port: `)).toBe(true)
      expect(lines[1]?.startsWith(`${path}: host: `)).toBe(true)
    })
  )

  it.effect("unknown keys are refused, naming the key, when asked; the parsed document travels with the issue", () =>
    Effect.gen(function* () {
      const path = file("extra.json", '{"port": 7300, "host": "a", "hots": "b"}')
      expect(yield* readJsonFile(path, Settings)).toEqual({ port: 7300, host: "a" })
      const { reason } = yield* Effect.flip(readJsonFile(path, Settings, { onExcessProperty: "error" }))
      if (reason._tag !== "JsonFileInvalid") return expect.fail(reason.message)
      expect(reason.message).toBe(`${path}: hots: unexpected key`)
      expect(reason.document).toEqual({ port: 7300, host: "a", hots: "b" })
    })
  )
})
