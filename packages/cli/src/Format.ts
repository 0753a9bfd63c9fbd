/** A count with its noun, agreeing in number: `1 device`, `3 devices`. */
export const plural = (n: number, noun: string, nouns = `${noun}s`): string => `${n} ${n === 1 ? noun : nouns}`
