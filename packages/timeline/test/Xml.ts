/**
 * A small strict XML reader for checking the SVG the timeline writes (Node has no XML parser):
 * one root element, every tag closed in order, attributes quoted and unique, `&` only in the
 * five named entities or a character reference, no `<` in text or attribute values. It keeps
 * comments and the XML declaration out of the tree and rejects DOCTYPEs and CDATA (the
 * timeline writes neither). Throws on the first problem, with its offset.
 */

/** An element of the document. */
export interface XmlElement {
  readonly name: string
  readonly attributes: Readonly<Record<string, string>>
  readonly children: ReadonlyArray<XmlElement | string>
}

const named: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }

const isNameStart = (c: string) => /[A-Za-z_:]/.test(c)
const isNameChar = (c: string) => /[A-Za-z0-9_:.-]/.test(c)
const isSpace = (c: string | undefined) => c === " " || c === "\n" || c === "\t" || c === "\r"

/** Parses `source`, throwing an `Error` naming the offset of the first problem. */
export const parseXml = (source: string): XmlElement => {
  let i = 0
  const fail = (why: string): never => {
    throw new Error(`not well-formed XML at offset ${i}: ${why}: ${JSON.stringify(source.slice(i, i + 40))}`)
  }
  const skipSpace = () => {
    while (isSpace(source[i])) i++
  }
  const name = (): string => {
    const begin = i
    if (!isNameStart(source[i] ?? "")) fail("expected a name")
    while (isNameChar(source[i] ?? "")) i++
    return source.slice(begin, i)
  }
  const decode = (raw: string, inAttribute: boolean): string => {
    let out = ""
    for (let k = 0; k < raw.length; k++) {
      const c = raw[k] ?? ""
      if (c === "<") fail("raw < in character data")
      if (inAttribute && c === '"') fail('raw " in an attribute value')
      if (c !== "&") {
        out += c
        continue
      }
      const semi = raw.indexOf(";", k)
      if (semi < 0) fail("& without ;")
      const entity = raw.slice(k + 1, semi)
      const numeric = /^#(\d+|x[0-9a-fA-F]+)$/.exec(entity)
      if (numeric !== null) {
        const digits = numeric[1] ?? ""
        out += String.fromCodePoint(digits.startsWith("x") ? Number.parseInt(digits.slice(1), 16) : Number(digits))
      } else {
        const value = named[entity]
        if (value === undefined) fail(`unknown entity &${entity};`)
        out += value
      }
      k = semi
    }
    return out
  }
  const skipMisc = () => {
    for (;;) {
      skipSpace()
      if (source.startsWith("<!--", i)) {
        const close = source.indexOf("-->", i + 4)
        if (close < 0) fail("unclosed comment")
        i = close + 3
      } else return
    }
  }
  const elementAt = (): XmlElement => {
    if (source[i] !== "<") fail("expected <")
    i++
    const tag = name()
    const attributes: Record<string, string> = {}
    for (;;) {
      const hadSpace = isSpace(source[i])
      skipSpace()
      if (source.startsWith("/>", i)) {
        i += 2
        return { name: tag, attributes, children: [] }
      }
      if (source[i] === ">") {
        i++
        break
      }
      if (!hadSpace) fail("attributes must be separated by white space")
      const attribute = name()
      skipSpace()
      if (source[i] !== "=") fail("expected =")
      i++
      skipSpace()
      const quote = source[i]
      if (quote !== '"' && quote !== "'") fail("attribute value not quoted")
      const close = source.indexOf(quote ?? "", i + 1)
      if (close < 0) fail("unclosed attribute value")
      if (attribute in attributes) fail(`duplicate attribute ${attribute}`)
      attributes[attribute] = decode(source.slice(i + 1, close), quote === '"')
      i = close + 1
    }
    const children: Array<XmlElement | string> = []
    for (;;) {
      if (i >= source.length) fail(`<${tag}> is never closed`)
      if (source.startsWith("</", i)) {
        i += 2
        const closing = name()
        if (closing !== tag) fail(`</${closing}> closes <${tag}>`)
        skipSpace()
        if (source[i] !== ">") fail("expected >")
        i++
        return { name: tag, attributes, children }
      }
      if (source.startsWith("<!--", i)) {
        skipMisc()
        continue
      }
      if (source.startsWith("<!", i) || source.startsWith("<?", i)) fail("unexpected markup declaration")
      if (source[i] === "<") {
        children.push(elementAt())
        continue
      }
      const next = source.indexOf("<", i)
      const end = next < 0 ? source.length : next
      children.push(decode(source.slice(i, end), false))
      i = end
    }
  }

  if (source.startsWith("<?xml", i)) {
    const close = source.indexOf("?>", i)
    if (close < 0) fail("unclosed XML declaration")
    i = close + 2
  }
  skipMisc()
  const root = elementAt()
  skipMisc()
  if (i !== source.length) fail("content after the root element")
  return root
}

/** Every element of the tree, depth first, the root included. */
export const elements = (root: XmlElement): Array<XmlElement> => [
  root,
  ...root.children.flatMap((c) => (typeof c === "string" ? [] : elements(c)))
]

/** The elements whose `class` attribute lists `name`. */
export const byClass = (root: XmlElement, name: string): Array<XmlElement> =>
  elements(root).filter((e) => (e.attributes.class ?? "").split(" ").includes(name))

/** All the character data under an element, in order. */
export const textOf = (e: XmlElement): string => e.children.map((c) => (typeof c === "string" ? c : textOf(c))).join("")
