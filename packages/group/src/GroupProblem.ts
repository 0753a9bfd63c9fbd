import { Schema, type SchemaAST, SchemaIssue } from "effect"
import { groupRules, viewOfInput } from "./GroupRules.js"

/** One reason a group description was refused, at a JSON path such as `devices[2].kind`. */
export const GroupProblem = Schema.Struct({
  /** The JSON path of the offending value; empty for the document itself. */
  path: Schema.String,
  /** What is wrong, as a sentence a user can act on. */
  reason: Schema.String
})

/** The type `GroupProblem` decodes to. */
export type GroupProblem = typeof GroupProblem.Type

const quote = (s: string): string => JSON.stringify(s)

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((key, i) => {
      if (typeof key === "number") return `[${key}]`
      const name = String(key)
      if (!/^[A-Za-z_$][\w$]*$/.test(name)) return `[${quote(name)}]`
      return i === 0 ? name : `.${name}`
    })
    .join("")

const formatInput = (issue: SchemaIssue.Issue): string => {
  if (!SchemaIssue.hasInput(issue)) return ""
  const text = typeof issue.input === "bigint" ? String(issue.input) : JSON.stringify(issue.input)
  return `, got ${text ?? String(issue.input)}`
}

/** The noun for a value at `path`: `kind`, `topology`, or `flag` for an element of `flags`. */
const nounAt = (path: ReadonlyArray<PropertyKey>): string => {
  const last = path.at(-1)
  const key = typeof last === "number" ? path.at(-2) : last
  const noun = typeof key === "string" ? key : "value"
  return typeof last === "number" && noun.endsWith("s") ? noun.slice(0, -1) : noun
}

const annotation = (
  node: { readonly annotations?: SchemaAST.AST["annotations"] },
  key: "expected" | "description"
): string | undefined => {
  const value = node.annotations?.[key]
  return typeof value === "string" ? value : undefined
}

const describe = (ast: SchemaAST.AST): string => {
  const written = annotation(ast, "expected") ?? annotation(ast, "description")
  if (written !== undefined) return written
  switch (ast._tag) {
    case "String":
      return "a string"
    case "Number":
      return "a number"
    case "Boolean":
      return "a boolean"
    case "Objects":
      return "an object"
    case "Arrays":
      return "an array"
    case "Literal":
      return JSON.stringify(ast.literal)
    default:
      return ast._tag.toLowerCase()
  }
}

/**
 * A union that refused a value as a whole (no member came close): an unknown name reads
 * `unknown kind "gpu"; expected one of pci, mdev, ccw, ap`, anything else `expected …, got …`.
 */
const refusedByUnion = (union: SchemaAST.Union, path: ReadonlyArray<PropertyKey>, issue: SchemaIssue.Issue): string => {
  const names = union.types.map((t) => (t._tag === "Literal" ? t.literal : undefined))
  const named = names.every((n) => typeof n === "string")
  const written = annotation(union, "expected")
  const expected = written ?? (named ? `one of ${names.join(", ")}` : describe(union))
  const input = SchemaIssue.hasInput(issue) ? issue.input : undefined
  return typeof input === "string" && (named || written !== undefined)
    ? `unknown ${nounAt(path)} ${quote(input)}; expected ${expected}`
    : `expected ${expected}${formatInput(issue)}`
}

/** A problem before its path is written out. */
interface RawProblem {
  readonly path: ReadonlyArray<PropertyKey>
  readonly reason: string
}

/**
 * Turns a schema issue tree into problems with JSON paths and sentences, in document order.
 * `expected` carries the description of the filter being checked, for value issues under it.
 */
const problemsOf = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey> = [],
  expected: string | undefined = undefined
): Array<RawProblem> => {
  const here = (reason: string): Array<RawProblem> => [{ path, reason }]
  switch (issue._tag) {
    case "Pointer":
      return problemsOf(issue.issue, [...path, ...issue.path], expected)
    case "Encoding":
      return problemsOf(issue.issue, path, expected)
    case "Filter":
      return problemsOf(issue.issue, path, annotation(issue.filter, "expected") ?? expected)
    case "Composite":
      return issue.issues.flatMap((inner) => problemsOf(inner, path, expected))
    case "AnyOf": {
      // Descend into the member that came close (an object for the edges form), unless the
      // value is not even of a member's type: then the union's own description says it best.
      const typeOnly = SchemaIssue.hasInput(issue) && (typeof issue.input !== "object" || issue.input === null)
      if (issue.issues.length === 0 || (typeOnly && annotation(issue.ast, "expected") !== undefined))
        return here(refusedByUnion(issue.ast, path, issue))
      return issue.issues.flatMap((inner) => problemsOf(inner, path, expected))
    }
    case "MissingKey":
      return here(issue.annotations?.messageMissingKey ?? "required, but missing")
    case "UnexpectedKey": {
      // A document may say which keys it has: `unexpected key; a device has id, kind, …`.
      const message = issue.ast.annotations?.messageUnexpectedKey
      return here(typeof message === "string" ? message : "unexpected key")
    }
    case "InvalidType":
      return here(`expected ${describe(issue.ast)}${formatInput(issue)}`)
    case "InvalidValue":
    case "Forbidden": {
      const message = issue.annotations?.message
      if (typeof message === "string") return here(message)
      return here(
        expected === undefined ? `invalid value${formatInput(issue)}` : `expected ${expected}${formatInput(issue)}`
      )
    }
    case "OneOf":
      return here(`matches more than one form${formatInput(issue)}`)
  }
}

/**
 * Every problem of a schema issue, each with its JSON path (`devices[2].sim.stateSize`) and a
 * sentence, in document order: for a caller that decodes a part of a document with its own
 * schema and reports the problems the way group problems are reported.
 */
export const describeIssue = (issue: SchemaIssue.Issue): ReadonlyArray<GroupProblem> =>
  problemsOf(issue).map((p) => ({ path: formatPath(p.path), reason: p.reason }))

/** Top-level keys in the order a group document is written. */
const keyRank = (key: PropertyKey): number => (key === "devices" ? 0 : key === "topology" ? 1 : 2)

/** Document order of two paths: by top-level key, then by every index; keys below the top keep their order. */
const byDocumentOrder = (x: RawProblem, y: RawProblem): number => {
  for (let k = 0; k < Math.min(x.path.length, y.path.length); k++) {
    const a = x.path[k]
    const b = y.path[k]
    if (a === b) continue
    if (typeof a === "number" && typeof b === "number") return a - b
    return k === 0 ? keyRank(a ?? "") - keyRank(b ?? "") : 0
  }
  return x.path.length - y.path.length
}

/**
 * Every problem of a refused document at once: the shape's, and the group rules' on whatever
 * parts of it are well formed (the rules' filter runs only on a well-formed document, which
 * would otherwise report the problems in stages), each once, in document order.
 */
export const allProblems = (input: unknown, issue: SchemaIssue.Issue): ReadonlyArray<GroupProblem> => {
  const view = viewOfInput(input)
  const rules: Array<RawProblem> =
    view === undefined ? [] : groupRules(view).map(({ path, issue: reason }) => ({ path, reason }))
  const seen = new Set<string>()
  return [...problemsOf(issue), ...rules]
    .map((p) => ({ ...p, text: formatPath(p.path) }))
    .filter((p) => {
      const key = `${p.text}\u0000${p.reason}`
      if (seen.has(key)) return false
      seen.add(key)
      return true
    })
    .sort(byDocumentOrder)
    .map((p) => ({ path: p.text, reason: p.reason }))
}
