import { fileURLToPath } from "node:url"
import { vi } from "vitest"
import { type Edit, mutationQuery } from "./MutationPlugin.js"

/**
 * Planting a bug: the modules it changes are replaced, for the modules imported afterwards, by
 * their mistaken versions (the real source with the bug's edits, see `MutationPlugin.ts`). Import
 * what should run with the bug after `plant` (dynamically), and call the returned function to pull
 * it out again; the real modules then come back for the next imports.
 */

/** A module (its path from the repository root) and the edits that make the mistake in it. */
export interface Mutation {
  readonly module: string
  readonly edits: ReadonlyArray<Edit>
}

const root = new URL("../../", import.meta.url)

/** Replaces each mutated module; answers the function that restores the real ones. */
export const plant = (mutations: ReadonlyArray<Mutation>): (() => void) => {
  vi.resetModules()
  const paths = mutations.map((m) => {
    const path = fileURLToPath(new URL(m.module, root))
    const mutated = `${path}${mutationQuery(m.edits)}`
    vi.doMock(path, () => import(/* @vite-ignore */ mutated))
    return path
  })
  return () => {
    for (const path of paths) vi.doUnmock(path)
    vi.resetModules()
  }
}
