import { ink, margin } from "./Palette.js"
import { element, text, textWidth } from "./Svg.js"

/**
 * The legend below the timeline: a swatch and its text for each thing the picture draws, in
 * rows that wrap at the picture's width. Each element's renderer says what it adds to the legend
 * (and when: a legend entry for something not drawn would only mislead), beside how it draws it.
 */

/** One entry of the legend: a 24×12 swatch and its text. */
export interface LegendItem {
  readonly key: string
  readonly swatch: (x: number, y: number) => string
  readonly label: string
}

const legendRow = 20
const legendFont = 10

/** A swatch filled with `fill`, outlined dashed in `stroke` if given. */
export const solidSwatch =
  (fill: string, stroke?: string) =>
  (x: number, y: number): string =>
    element("rect", {
      x,
      y,
      width: 24,
      height: 12,
      fill,
      stroke,
      "stroke-dasharray": stroke === undefined ? undefined : "3 2"
    })

/** A swatch of a band across the lanes: `fill` at `opacity`, outlined in `stroke`. */
export const bandSwatch =
  (fill: string, opacity: number, stroke: string) =>
  (x: number, y: number): string =>
    element("rect", { x, y, width: 24, height: 12, fill, "fill-opacity": opacity, stroke, "stroke-width": 1 })

/** The legend entries of `items` for which `shown` holds. */
export const legendIf = (shown: boolean, ...items: ReadonlyArray<LegendItem>): ReadonlyArray<LegendItem> =>
  shown ? items : []

/** Draws the legend from `top` down in a picture `width` px wide; returns it and the picture's height. */
export const renderLegend = (
  items: ReadonlyArray<LegendItem>,
  top: number,
  width: number
): { readonly markup: string; readonly height: number } => {
  const markup: Array<string> = []
  let lx = margin
  let ly = top
  for (const item of items) {
    const itemWidth = 30 + textWidth(item.label, legendFont) + 16
    if (lx + itemWidth > width - margin && lx > margin) {
      lx = margin
      ly += legendRow
    }
    markup.push(
      element("g", { class: "legend-item", "data-item": item.key }, [
        item.swatch(lx, ly),
        element("text", { x: lx + 30, y: ly + 10, "font-size": legendFont, fill: ink }, text(item.label))
      ])
    )
    lx += itemWidth
  }
  return { markup: element("g", { class: "legend" }, markup), height: Math.ceil(ly + legendRow + margin) }
}
