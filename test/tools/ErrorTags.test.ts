/*
 * A tag names one error: `catchTag`, the CLI's exit codes and a peer reading an abort all tell
 * errors apart by `_tag` alone, so two classes sharing one would be caught, reported or decoded
 * as each other. Every tagged class declared in the packages' sources is found by its
 * declaration and no tag may be declared twice.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"

const packages = fileURLToPath(new URL("../../packages/", import.meta.url))

const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const at = join(dir, entry.name)
    if (entry.isDirectory()) return sources(at)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [at] : []
  })

/** `class X extends Data.TaggedError("Tag")`, `Schema.TaggedError<X>()("Tag", …)`, the same for TaggedClass. */
const declaration =
  /class\s+(\w+)\s+extends\s+(?:Data|Schema)\.Tagged(?:Error|Class)\s*(?:<\s*\w+\s*>\s*\(\s*\))?\(\s*"(\w+)"/g

const declared = readdirSync(packages).flatMap((name) =>
  sources(join(packages, name, "src")).flatMap((file) =>
    [...readFileSync(file, "utf8").matchAll(declaration)].map((m) => ({
      tag: m[2] ?? "",
      where: `${name}/${file.slice(join(packages, name, "src").length + 1)}: ${m[1]}`
    }))
  )
)

/**
 * The tags of the handshake's refusals, from the `Refusal` type (what a destination sends; the
 * tags older peers sent are only decoded). A refusal travels among errors, in `HandshakeRefused`.
 */
const refusalTags = (() => {
  const handshake = readFileSync(join(packages, "migration", "src", "Handshake.ts"), "utf8")
  const type = /export type Refusal =([\s\S]*?)\n\n/.exec(handshake)?.[1] ?? ""
  return [...type.matchAll(/readonly _tag: "(\w+)"/g)].map((m) => m[1] ?? "")
})()

describe("tagged classes", () => {
  it("are found (the pattern still matches how the sources declare them)", () => {
    expect(declared.map((d) => d.tag)).toEqual(expect.arrayContaining(["PlanError", "FsmError", "TransitionFailed"]))
  })

  it("never share a tag", () => {
    const byTag = new Map<string, Array<string>>()
    for (const d of declared) byTag.set(d.tag, [...(byTag.get(d.tag) ?? []), d.where])
    expect([...byTag].filter(([, where]) => where.length > 1)).toEqual([])
  })

  it("share no tag with a handshake refusal", () => {
    expect(refusalTags).toEqual(expect.arrayContaining(["NoSuchDevice", "MissingDevice", "DestinationNotMigratable"]))
    const tags = new Set(declared.map((d) => d.tag))
    expect(refusalTags.filter((tag) => tags.has(tag))).toEqual([])
  })
})
