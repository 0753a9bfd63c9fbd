import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"
import { mutationPlugin } from "./test/planted/MutationPlugin.js"

// Tests import the packages' sources, not their build output, so `npm test` never tests stale code.
const packages = fileURLToPath(new URL("./packages/", import.meta.url))

export default defineConfig({
  // Tests that plant bugs import production modules with their mistakes applied (test/planted).
  plugins: [mutationPlugin()],
  resolve: {
    alias: [{ find: /^@lockstep\/([a-z-]+)$/, replacement: `${packages}$1/src/index.ts` }]
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
