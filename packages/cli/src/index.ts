/**
 * The `lockstep` command-line interface.
 *
 * @packageDocumentation
 */
export { CliFailure, invalidInput } from "./CliFailure.js"
export { lockstep, main } from "./Main.js"
export { Signals, type SignalsShape } from "./Signals.js"
