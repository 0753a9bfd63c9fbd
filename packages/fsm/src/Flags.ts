import { Schema, SchemaGetter } from "effect"

/** Migration capability bits (`VFIO_MIGRATION_*` in the uAPI). */
export const FlagBit = {
  STOP_COPY: 1,
  P2P: 2,
  PRE_COPY: 4
} as const

/** One migration capability. */
export type Flag = keyof typeof FlagBit

/** Every capability, in the canonical order STOP_COPY, P2P, PRE_COPY. */
export const FlagNames: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]

/**
 * A device's migration capabilities as the uAPI bit mask (0-7). STOP_COPY is mandatory for
 * a migratable device; P2P and PRE_COPY are optional.
 */
export type Flags = number

/** All three capabilities. */
export const AllFlags: Flags = FlagBit.STOP_COPY | FlagBit.P2P | FlagBit.PRE_COPY

/** Every flag set the uAPI can express, including those without STOP_COPY. */
export const AllFlagSets: ReadonlyArray<Flags> = [0, 1, 2, 3, 4, 5, 6, 7]

/** Whether `flags` includes `flag`. */
export const hasFlag = (flags: Flags, flag: Flag): boolean => (flags & FlagBit[flag]) !== 0

/** The bit mask of a list of capability names. */
export const flagsOf = (names: Iterable<Flag>): Flags => {
  let mask = 0
  for (const name of names) mask |= FlagBit[name]
  return mask
}

/** The capability names of a mask, in canonical order. */
export const flagNames = (flags: Flags): ReadonlyArray<Flag> => FlagNames.filter((f) => hasFlag(flags, f))

const FlagName = Schema.Literals(FlagNames)

/**
 * Decodes a flag set from a list of capability names (`["STOP_COPY", "P2P"]`) or from
 * the uAPI bit mask (`3`); encodes to the list of names in canonical order.
 */
export const FlagsSchema: Schema.Codec<Flags, ReadonlyArray<Flag> | number> = Schema.Union([
  Schema.Array(FlagName).pipe(
    Schema.decodeTo(Schema.Number, {
      decode: SchemaGetter.transform((names: ReadonlyArray<Flag>) => flagsOf(names)),
      encode: SchemaGetter.transform((mask: number) => flagNames(mask))
    })
  ),
  Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 7 }))
]).annotate({
  identifier: "Flags",
  description: `a list of migration flags among ${FlagNames.join(", ")}, or their uAPI bit mask 0-7`
})
