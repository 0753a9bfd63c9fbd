import { spawnSync } from "node:child_process"
import { describe, expect, it } from "@effect/vitest"
import { renderTimelineSvg } from "@lockstep/timeline"
import { Effect } from "effect"
import { decodePng } from "./Png.js"
import { gpuClusterDoc, keep, recordPlantedBug, simulate } from "./runs.js"

/**
 * Optional: rasterises a timeline with `rsvg-convert` (Debian package librsvg2-bin) when it is
 * installed, and checks the picture is really drawn. Skipped where it is not: the structural
 * checks in `Render.test.ts` never need a converter.
 */
const rsvg = spawnSync("rsvg-convert", ["--version"], { encoding: "utf8" }).status === 0

describe("renderTimelineSvg: rasterised", () => {
  it.effect.skipIf(!rsvg)("rsvg-convert draws it at its size, with every state colour and red for violations", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const svg = renderTimelineSvg(yield* recordPlantedBug(sim))
      const converted = spawnSync("rsvg-convert", ["--format=png"], { input: svg, maxBuffer: 64 << 20 })
      expect(converted.status, converted.stderr?.toString()).toBe(0)
      keep("violations.test.png", new Uint8Array(converted.stdout))
      const image = decodePng(new Uint8Array(converted.stdout))
      const declared = /<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg)
      expect([image.width, image.height]).toEqual([Number(declared?.[1]), Number(declared?.[2])])
      const colours = new Map<string, number>()
      let ink = 0
      for (let p = 0; p < image.width * image.height; p++) {
        const [r, g, b] = [image.rgba[p * 4] ?? 0, image.rgba[p * 4 + 1] ?? 0, image.rgba[p * 4 + 2] ?? 0]
        if (r + g + b < 720) ink++
        const key = `${r},${g},${b}`
        colours.set(key, (colours.get(key) ?? 0) + 1)
      }
      expect(ink / (image.width * image.height)).toBeGreaterThan(0.25)
      // The class colours and the violation red are there as solid areas, not just anti-aliasing.
      for (const colour of ["63,124,192", "238,180,63", "107,122,138", "214,39,40"])
        expect(colours.get(colour) ?? 0, colour).toBeGreaterThan(100)
    })
  )
})
