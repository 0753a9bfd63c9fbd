import type { Mutation } from "./Plant.js"

/**
 * Mistakes a person could plausibly make in Lockstep, each as the edits that make it in the real
 * source (planted by substituting the mutated module, see `Plant.ts`), with the checker that must
 * catch it: a fuzzer within its CI budget from any seed, or a tier of the exhaustive checker.
 * The first four are the fuzzers' original planted bugs; the others cover the blind spots issue
 * 16 names (concurrency bounds, the migration sessions, over-cautious refusals, edges, rare
 * rollbacks, arcs that land although interrupted).
 */

/** Which checker must catch a bug. */
export type Catcher =
  | { readonly _tag: "Fuzzer"; readonly name: "interleavings" | "model" | "campaign" | "sessions" }
  | {
      readonly _tag: "Exhaustive"
      readonly tier:
        | "edgesTier"
        | "pairsTier"
        | "triplesTier"
        | "faultsTier"
        | "interruptionsTier"
        | "rollbackFaultsTier"
        | "boundedSchedulesTier"
    }
  | { readonly _tag: "Migrations"; readonly group: number }

export interface PlantedBug {
  readonly name: string
  /** Where the mistake is: planner, topology, executor, rollback, concurrency, source or destination session. */
  readonly area: string
  /** The blind spot of issue 16 it sits in, if any. */
  readonly blindSpot: string | undefined
  readonly mutations: ReadonlyArray<Mutation>
  readonly catcher: Catcher
}

const planner = "packages/coordinator/src/Planner.ts"
const topology = "packages/group/src/Topology.ts"
const group = "packages/group/src/Group.ts"
const executor = "packages/coordinator/src/Executor.ts"
const runner = "packages/coordinator/src/ArcRunner.ts"
const sourceAbort = "packages/migration/src/SourceAbort.ts"
const destinationCommit = "packages/migration/src/DestinationCommit.ts"

export const plantedBugs: ReadonlyArray<PlantedBug> = [
  {
    name: "the planner drops its down-dependencies: targets halt before their initiators quiesce",
    area: "planner",
    blindSpot: undefined,
    mutations: [
      {
        module: planner,
        edits: [
          {
            find: `if (typeof w.closes === "number" && typeof v.opens === "number") nodes[v.opens]?.after.push(w.closes)`,
            replace: ""
          },
          {
            find: "const down = connect(",
            replace: "const down: DependencyCycle | undefined = ((..._: ReadonlyArray<unknown>) => undefined)("
          }
        ]
      }
    ],
    catcher: { _tag: "Fuzzer", name: "interleavings" }
  },
  {
    name: "the rollback leaves out one device that has to move back",
    area: "rollback",
    blindSpot: undefined,
    mutations: [
      {
        module: executor,
        edits: [
          {
            find: "    let rollbackCause: FailureCause | PlanError | undefined = resetFailures[0]",
            replace: `    const skipped = group.devices.find((d) => from[d.id] !== to[d.id])
    if (skipped !== undefined) to[skipped.id] = from[skipped.id] ?? "RUNNING"
    let rollbackCause: FailureCause | PlanError | undefined = resetFailures[0]`
          }
        ]
      }
    ],
    catcher: { _tag: "Fuzzer", name: "campaign" }
  },
  {
    name: "the rollback assumes the states the completed arcs reached instead of reading them back",
    area: "executor",
    blindSpot: undefined,
    mutations: [
      {
        module: executor,
        edits: [
          {
            find: "const rolling = yield* Effect.forkDetach(rollback(runtime, start, attempted, cause, failedNode, options))",
            replace: `const assumed: Record<string, State> = { ...start }
        for (const i of Option.match(outcome, { onNone: () => [], onSome: (o) => o.completed })) {
          const node = nodes[i]
          if (node?.device !== undefined && node.arc !== undefined) assumed[node.device] = node.arc.to
        }
        const rolling = yield* Effect.forkDetach(rollback(runtime, start, attempted, cause, failedNode, options, assumed))`
          },
          {
            find: "  options: TransitionOptions\n): Effect.Effect<never, TransitionFailed> =>",
            replace:
              "  options: TransitionOptions,\n  assumed: Record<string, State>\n): Effect.Effect<never, TransitionFailed> =>"
          },
          {
            find: "let states: FinalStates = yield* reportedStates(runtime)",
            replace: "let states: FinalStates = assumed"
          }
        ]
      }
    ],
    catcher: { _tag: "Fuzzer", name: "model" }
  },
  {
    name: "the runner starts an arc when all but one of its dependencies are done",
    area: "executor",
    blindSpot: undefined,
    mutations: [
      {
        module: runner,
        edits: [
          {
            find: "if (pending[d] === 0) ready.push(d)",
            replace:
              "if (pending[d] === (nodes[d]?.arc !== undefined && (nodes[d]?.after.length ?? 0) > 1 ? 1 : 0)) ready.push(d)"
          }
        ]
      }
    ],
    catcher: { _tag: "Fuzzer", name: "interleavings" }
  },
  {
    name: "the runner lets one arc more than the bound fly (<= for <)",
    area: "concurrency",
    blindSpot: "no generated group had a concurrency bound",
    mutations: [
      {
        module: runner,
        edits: [{ find: "inFlight < limit", replace: "inFlight <= limit" }]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "boundedSchedulesTier" }
  },
  {
    name: "the planner refuses a P2P domain with one member without P2P, though it can stop that one first",
    area: "planner",
    blindSpot: "a refusal was accepted whenever the planner under test also refused",
    mutations: [
      {
        module: planner,
        edits: [
          { find: "if (one !== undefined && two !== undefined)", replace: "if (one !== undefined)" },
          { find: "...cycleArc(nodes[two.node], routes)", replace: "...cycleArc(nodes[(two ?? one).node], routes)" }
        ]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "pairsTier" }
  },
  {
    name: "the planner counts PRE_COPY_P2P as initiating (it is still pre-copy): every multi-GPU switchover from pre-copy is refused",
    area: "planner",
    blindSpot: "a refusal was accepted whenever the planner under test also refused",
    mutations: [
      {
        module: planner,
        edits: [
          {
            find: `const classAt = (j: number) => (j === 0 && quietStart ? "quiesced" : stateClass(states[j] ?? "ERROR"))`,
            replace: `const classAt = (j: number) => (j === 0 && quietStart ? "quiesced" : states[j] === "PRE_COPY_P2P" ? "initiating" : stateClass(states[j] ?? "ERROR"))`
          }
        ]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "pairsTier" }
  },
  {
    name: "the topology ignores P2P domains of two devices",
    area: "topology",
    blindSpot: "edges came from the coordinator's Topology",
    mutations: [
      {
        module: topology,
        edits: [{ find: "if (members.length < 2) continue", replace: "if (members.length < 3) continue" }]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "edgesTier" }
  },
  {
    name: "the topology takes a → b and b → a for the same edge when it drops duplicates",
    area: "topology",
    blindSpot: "edges came from the coordinator's Topology",
    mutations: [
      {
        module: topology,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the edit is the module's source text
        edits: [{ find: "const key = `${a}>${b}`", replace: "const key = a < b ? `${a}>${b}` : `${b}>${a}`" }]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "edgesTier" }
  },
  {
    name: "a shared IOMMU counts every device as a P2P end, mdev and s390 ones included",
    area: "topology",
    blindSpot: "edges came from the coordinator's Topology",
    mutations: [
      {
        module: group,
        edits: [{ find: "[doc.devices.filter((d) => kindMayDoP2P(d.kind)).map((d) => d.id)]", replace: "[ids]" }]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "edgesTier" }
  },
  {
    name: "the quarantine keeps the devices that write into the quarantined one out of halted states, not its targets",
    area: "rollback",
    blindSpot: "rollbacks combining a quarantined device, one-way edges and halted starts were rare",
    mutations: [
      {
        module: executor,
        edits: [{ find: "group.topology.targetsOf(id)", replace: "group.topology.initiatorsOf(id)" }]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "rollbackFaultsTier" }
  },
  {
    name: "a device that cannot go back to pre-copy always falls back to RUNNING, even from PRE_COPY_P2P",
    area: "rollback",
    blindSpot: "rollbacks combining a quarantined device, one-way edges and halted starts were rare",
    mutations: [{ module: executor, edits: [{ find: `(outsideSaving[start] ?? "RUNNING")`, replace: `"RUNNING"` }] }],
    catcher: { _tag: "Exhaustive", tier: "faultsTier" }
  },
  {
    name: "the rollback takes a timed-out arc to have been cancelled, its device where it was",
    area: "executor",
    blindSpot: "the simulator treated an interrupted arc as a clean cancel",
    mutations: [
      {
        module: executor,
        edits: [
          {
            find: "let states: FinalStates = yield* reportedStates(runtime)",
            replace: `let states: FinalStates = yield* reportedStates(runtime)
    if (cause._tag === "ArcTimedOut" && failedNode?.device !== undefined && failedNode.arc !== undefined)
      states = { ...states, [failedNode.device]: failedNode.arc.from }`
          }
        ]
      }
    ],
    catcher: { _tag: "Exhaustive", tier: "faultsTier" }
  },
  {
    name: "the source takes a journalled start for a commit: after a failure it stays stopped instead of rolling back",
    area: "source session",
    blindSpot: "the migration sessions were never fuzzed",
    mutations: [
      {
        module: sourceAbort,
        edits: [{ find: "if (s.committed && failure.cause._tag", replace: "if (s.begun && failure.cause._tag" }]
      }
    ],
    catcher: { _tag: "Fuzzer", name: "sessions" }
  },
  {
    name: "the destination takes the channel lost after its vote for a commit and resumes, without asking the journal",
    area: "destination session",
    blindSpot: "the migration sessions were never fuzzed",
    mutations: [
      {
        module: destinationCommit,
        edits: [{ find: "      yield* decideFromJournal(ctx, migration, lost.value)\n", replace: "" }]
      }
    ],
    catcher: { _tag: "Migrations", group: 1 }
  },
  {
    name: "once COMMIT is journalled the source never gives the group back, even when the destination fails to resume",
    area: "source session",
    blindSpot: "the migration sessions were never fuzzed",
    mutations: [
      {
        module: sourceAbort,
        edits: [
          {
            find: `const renounced = s.committed && cause._tag === "PeerAborted"`,
            replace: "const renounced = false"
          }
        ]
      }
    ],
    catcher: { _tag: "Migrations", group: 1 }
  }
]
