import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// Tests import the packages' sources, not their build output, so `npm test` never tests stale code.
const packages = fileURLToPath(new URL("./packages/", import.meta.url))

export default defineConfig({
  resolve: {
    alias: [{ find: /^@lockstep\/([a-z-]+)$/, replacement: `${packages}$1/src/index.ts` }]
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
