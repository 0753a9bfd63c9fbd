/**
 * A Vite plugin for tests that plant bugs: a module imported with `?mutation=<edits>` is the
 * module's own source with the edits applied (each a `find` that must occur exactly once, and its
 * `replace`), so a test can substitute a mistaken version of a production module for the real one
 * (`vi.doMock`, see `Plant.ts`). Production code has no switch for it: without the query, nothing
 * is changed.
 */

/** One textual change to a module's source. */
export interface Edit {
  readonly find: string
  readonly replace: string
}

const marker = "?mutation="

/** The query that asks for `edits` applied to a module. */
export const mutationQuery = (edits: ReadonlyArray<Edit>): string =>
  `${marker}${Buffer.from(JSON.stringify(edits)).toString("base64url")}`

/** Applies `edits` to `source`; throws if a `find` is missing or ambiguous (the plant no longer fits the code). */
export const applyEdits = (source: string, edits: ReadonlyArray<Edit>, where: string): string =>
  edits.reduce((code, { find, replace }) => {
    const first = code.indexOf(find)
    if (first < 0 || code.indexOf(find, first + 1) >= 0)
      throw new Error(
        `planted bug: ${first < 0 ? "no" : "more than one"} ${JSON.stringify(find)} in ${where}; update the plant to the code`
      )
    return code.slice(0, first) + replace + code.slice(first + find.length)
  }, source)

/** The plugin: for Vitest's `plugins`. */
export const mutationPlugin = () => ({
  name: "lockstep:planted-mutation",
  enforce: "pre" as const,
  transform(code: string, id: string): { readonly code: string; readonly map: null } | undefined {
    const at = id.indexOf(marker)
    if (at < 0) return undefined
    const encoded = id.slice(at + marker.length).split("&")[0] ?? ""
    const edits = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8")) as ReadonlyArray<Edit>
    return { code: applyEdits(code, edits, id.slice(0, at)), map: null }
  }
})
