/**
 * Just enough SVG writing for the timeline: escaped text and attributes, and elements built as
 * strings. Every piece of caller text goes through `escapeXml`, so a device id such as
 * `<gpu&0>` cannot break the document.
 */

const entities: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;"
}

/** Characters XML 1.0 cannot carry at all, not even escaped: they are dropped. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are the point
const forbidden = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g

/** Text made safe for XML character data and attribute values. */
export const escapeXml = (text: string): string =>
  text.replace(forbidden, "").replace(/[&<>"']/g, (ch) => entities[ch] ?? "")

/** An attribute value: numbers rounded to 0.01 px, `undefined` leaves the attribute out. */
export type AttributeValue = string | number | undefined

const formatNumber = (value: number): string => {
  if (!Number.isFinite(value)) return "0"
  const rounded = Math.round(value * 100) / 100
  return Object.is(rounded, -0) ? "0" : String(rounded)
}

const attributes = (attrs: Readonly<Record<string, AttributeValue>>): string =>
  Object.entries(attrs)
    .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
    .map(([name, value]) => ` ${name}="${typeof value === "number" ? formatNumber(value) : escapeXml(value)}"`)
    .join("")

/** An element; `children` is markup already built (use `text` for caller text). */
export const element = (
  name: string,
  attrs: Readonly<Record<string, AttributeValue>>,
  children: string | ReadonlyArray<string> = ""
): string => {
  const inner = typeof children === "string" ? children : children.join("")
  return inner === "" ? `<${name}${attributes(attrs)}/>` : `<${name}${attributes(attrs)}>${inner}</${name}>`
}

/** Caller text as character data. */
export const text = (content: string): string => escapeXml(content)

/** A tooltip, as the first child of the element it describes. */
export const tooltip = (content: string): string => element("title", {}, text(content))

/**
 * The width of `content` in px at `fontSize`, estimated for a sans-serif face (no fonts are
 * measured: the picture must not depend on what is installed).
 */
export const textWidth = (content: string, fontSize: number): number => [...content].length * fontSize * 0.6

/** A standalone SVG document: the XML declaration, the `svg` element, a final newline. */
export const svgDocument = (attrs: Readonly<Record<string, AttributeValue>>, children: ReadonlyArray<string>): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n${element("svg", { xmlns: "http://www.w3.org/2000/svg", ...attrs }, children)}\n`
