import { inflateSync } from "node:zlib"

/**
 * Just enough PNG decoding to tell a drawn picture from a blank one: 8-bit greyscale, RGB or
 * RGBA, not interlaced (what `rsvg-convert` writes).
 */

/** A decoded image: RGBA pixels, row by row. */
export interface Image {
  readonly width: number
  readonly height: number
  readonly rgba: Uint8Array
}

const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const channelsOf: Readonly<Record<number, number>> = { 0: 1, 2: 3, 4: 2, 6: 4 }

const paeth = (a: number, b: number, c: number): number => {
  const p = a + b - c
  const pa = Math.abs(p - a)
  const pb = Math.abs(p - b)
  const pc = Math.abs(p - c)
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
}

/** Decodes `png`, throwing on anything it does not handle. */
export const decodePng = (png: Uint8Array): Image => {
  if (!signature.every((b, i) => png[i] === b)) throw new Error("not a PNG")
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength)
  let offset = 8
  let width = 0
  let height = 0
  let channels = 0
  const idat: Array<Uint8Array> = []
  while (offset < png.length) {
    const length = view.getUint32(offset)
    const type = String.fromCharCode(...png.subarray(offset + 4, offset + 8))
    const data = png.subarray(offset + 8, offset + 8 + length)
    if (type === "IHDR") {
      width = view.getUint32(offset + 8)
      height = view.getUint32(offset + 12)
      const depth = data[8]
      const colour = data[9] ?? -1
      if (depth !== 8 || data[12] !== 0) throw new Error(`unsupported PNG: depth ${depth}, interlace ${data[12]}`)
      channels = channelsOf[colour] ?? 0
      if (channels === 0) throw new Error(`unsupported PNG colour type ${colour}`)
    } else if (type === "IDAT") idat.push(data)
    else if (type === "IEND") break
    offset += 12 + length
  }
  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * channels
  const pixels = new Uint8Array(stride * height)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? (pixels[y * stride + i - channels] ?? 0) : 0
      const up = y > 0 ? (pixels[(y - 1) * stride + i] ?? 0) : 0
      const upLeft = y > 0 && i >= channels ? (pixels[(y - 1) * stride + i - channels] ?? 0) : 0
      const predictor = [0, left, up, (left + up) >> 1, paeth(left, up, upLeft)][filter ?? 0] ?? 0
      pixels[y * stride + i] = ((row[i] ?? 0) + predictor) & 0xff
    }
  }
  const rgba = new Uint8Array(width * height * 4)
  for (let p = 0; p < width * height; p++) {
    const at = p * channels
    const grey = channels <= 2
    rgba[p * 4] = pixels[at] ?? 0
    rgba[p * 4 + 1] = pixels[grey ? at : at + 1] ?? 0
    rgba[p * 4 + 2] = pixels[grey ? at : at + 2] ?? 0
    rgba[p * 4 + 3] = channels === 4 ? (pixels[at + 3] ?? 0) : channels === 2 ? (pixels[at + 1] ?? 0) : 255
  }
  return { width, height, rgba }
}
