import { runMain } from "./Runner.js"

runMain(process.argv.slice(2))
