import { Effect, Stream } from "effect"
import { Xml } from "effect/encoding"

/**
 * Reads the SVG the timeline writes with Effect's XML decoder (`effect/encoding/Xml`), which
 * checks that a document is well-formed: one root element, every tag closed in order,
 * attributes quoted and unique, only the five named entities or character references. The
 * timeline writes no DOCTYPE and no CDATA, so the reader refuses both, to keep what the pictures
 * may contain as narrow as the renderer's output. Throws on the first problem, naming it.
 */

/** An element of the document. */
export type XmlElement = Xml.Element

/** Parses `source`, throwing an `Error` naming the line and column of the first problem. */
export const parseXml = (source: string): XmlElement => {
  const events = Effect.runSync(
    Stream.make(source).pipe(
      Stream.pipeThroughChannel(Xml.decodeString()),
      Stream.runCollect,
      Effect.mapError((error) => new Error(`not well-formed XML: ${error.message}`)),
      Effect.orDie
    )
  )
  const refused = events.find((e) => e._tag === "Doctype")
  if (refused !== undefined) throw new Error("not well-formed for a timeline: a DOCTYPE")
  if (/<!\[CDATA\[/.test(source)) throw new Error("not well-formed for a timeline: a CDATA section")
  const roots = Effect.runSync(
    Stream.fromIterable(events).pipe(Stream.pipeThroughChannel(Xml.elements(["*"])), Stream.runCollect)
  )
  const [root] = roots
  if (root === undefined) throw new Error("not well-formed XML: no root element")
  return root
}

/** Every element of the tree, depth first, the root included. */
export const elements = (root: XmlElement): Array<XmlElement> => [
  root,
  ...root.children.flatMap((c) => (typeof c === "string" ? [] : elements(c)))
]

/** The elements whose `class` attribute lists `name`. */
export const byClass = (root: XmlElement, name: string): Array<XmlElement> =>
  elements(root).filter((e) => (e.attributes.class ?? "").split(/\s+/).includes(name))

/** The text of an element and its descendants, in document order. */
export const textOf = (e: XmlElement): string => e.children.map((c) => (typeof c === "string" ? c : textOf(c))).join("")
