import { describe, expect, it } from "@effect/vitest"
import {
  AllFlagSets,
  AllFlags,
  arcsFor,
  type Flags,
  flagsOf,
  isArc,
  isSaving,
  nextState,
  type Path,
  path,
  type State,
  States,
  supportsState
} from "@lockstep/fsm"
import { Result } from "effect"
import * as fc from "fast-check"

const pathOf = (from: State, to: State, flags: Flags = AllFlags): Path | string => {
  const r = path(from, to, flags)
  return Result.isSuccess(r) ? r.success : r.failure.reason._tag
}

/** The rule, restated independently of the implementation: may `p` be a combination transition? */
const obeysInteriorRule = (p: Path): boolean => {
  const from = p[0]
  const to = p[p.length - 1]
  if (from === undefined || to === undefined) return false
  const inside = isSaving(from) && isSaving(to)
  return p.slice(1, -1).every((s) => (inside ? isSaving(s) : !isSaving(s)))
}

/** Every walk over legal arcs from `from` to `to` with no repeated state (brute force). */
const allSimplePaths = (flags: Flags, from: State, to: State): Array<Path> => {
  const out: Array<Path> = []
  const walk = (at: Path) => {
    const last = at[at.length - 1] as State
    if (last === to) {
      out.push(at)
      return
    }
    for (const [a, b] of oracleArcs(flags)) if (a === last && !at.includes(b)) walk([...at, b])
  }
  walk([from])
  return out
}

const pairs: Array<[State, State]> = States.flatMap((a) => States.map((b): [State, State] => [a, b]))

/*
 * The oracle the production table is checked against, derived from DESIGN.md §1 alone: the 15
 * arcs of a device with every feature, the fusing rule for reduced feature sets, and a search
 * for the shortest path whose interior avoids the saving group (or stays inside it when the
 * path starts and ends there).
 */
const fullArcs: ReadonlyArray<readonly [State, State]> = [
  ["RUNNING", "RUNNING_P2P"],
  ["RUNNING", "PRE_COPY"],
  ["RUNNING_P2P", "STOP"],
  ["RUNNING_P2P", "RUNNING"],
  ["RUNNING_P2P", "PRE_COPY_P2P"],
  ["STOP", "RUNNING_P2P"],
  ["STOP", "STOP_COPY"],
  ["STOP", "RESUMING"],
  ["STOP_COPY", "STOP"],
  ["RESUMING", "STOP"],
  ["PRE_COPY", "RUNNING"],
  ["PRE_COPY", "PRE_COPY_P2P"],
  ["PRE_COPY_P2P", "PRE_COPY"],
  ["PRE_COPY_P2P", "RUNNING_P2P"],
  ["PRE_COPY_P2P", "STOP_COPY"]
]

const oracleSupports = (flags: Flags, s: State): boolean => {
  if (s === "ERROR" || (flags & 1) === 0) return false
  const needsP2P = s === "RUNNING_P2P" || s === "PRE_COPY_P2P"
  const needsPre = s === "PRE_COPY" || s === "PRE_COPY_P2P"
  return (!needsP2P || (flags & 2) !== 0) && (!needsPre || (flags & 4) !== 0)
}

/** Arcs through an unsupported P2P state fuse into one arc; other unsupported states drop out. */
const oracleArcs = (flags: Flags): Array<[State, State]> => {
  const out = new Map<string, [State, State]>()
  for (const [from, to] of fullArcs) {
    if (!oracleSupports(flags, from)) continue
    if (oracleSupports(flags, to)) out.set(`${from}>${to}`, [from, to])
    else if ((to === "RUNNING_P2P" || to === "PRE_COPY_P2P") && (flags & 2) === 0)
      for (const [via, next] of fullArcs)
        if (via === to && next !== from && oracleSupports(flags, next)) out.set(`${from}>${next}`, [from, next])
  }
  return [...out.values()]
}

const oraclePath = (flags: Flags, from: State, to: State): Path | undefined => {
  if (!oracleSupports(flags, from) || !oracleSupports(flags, to)) return undefined
  if (from === to) return [from]
  const inside = isSaving(from) && isSaving(to)
  const arcs = oracleArcs(flags)
  let frontier: Array<Path> = [[from]]
  const seen = new Set<State>([from])
  while (frontier.length > 0) {
    const next: Array<Path> = []
    for (const p of frontier) {
      const at = p[p.length - 1] as State
      if (at !== from && (inside ? !isSaving(at) : isSaving(at))) continue
      for (const [a, b] of arcs) {
        if (a !== at || seen.has(b)) continue
        if (b === to) return [...p, b]
        seen.add(b)
        next.push([...p, b])
      }
    }
    frontier = next
  }
  return undefined
}

describe("the kernel's table, derived from the arcs and the rule", () => {
  it("every arc set equals the one the fusing rule derives from DESIGN.md's 15 arcs", () => {
    for (const flags of AllFlagSets) {
      const ours = arcsFor(flags).map((a) => `${a.from}>${a.to}`)
      expect(ours.sort(), `flags ${flags}`).toEqual(
        oracleArcs(flags)
          .map(([a, b]) => `${a}>${b}`)
          .sort()
      )
    }
  })

  it("every (flags, from, to) answer equals the searched shortest rule-abiding path, or is refused where none exists", () => {
    for (const flags of AllFlagSets) {
      for (const [from, to] of pairs) {
        const expected = oraclePath(flags, from, to)
        const ours = pathOf(from, to, flags)
        if (expected === undefined) expect(typeof ours, `${from} -> ${to} with flags ${flags}`).toBe("string")
        else expect(ours, `${from} -> ${to} with flags ${flags}`).toEqual(expected)
      }
    }
  })
})

describe("direct arcs", () => {
  it("has the uAPI's arc count for each flag set with STOP_COPY", () => {
    expect(arcsFor(flagsOf(["STOP_COPY"])).length).toBe(6)
    expect(arcsFor(flagsOf(["STOP_COPY", "P2P"])).length).toBe(8)
    expect(arcsFor(flagsOf(["STOP_COPY", "PRE_COPY"])).length).toBe(9)
    expect(arcsFor(AllFlags).length).toBe(15)
  })

  it("has exactly the 15 arcs of the uAPI with all flags", () => {
    const expected = [
      "RUNNING>RUNNING_P2P",
      "RUNNING>PRE_COPY",
      "RUNNING_P2P>STOP",
      "RUNNING_P2P>RUNNING",
      "RUNNING_P2P>PRE_COPY_P2P",
      "STOP>RUNNING_P2P",
      "STOP>STOP_COPY",
      "STOP>RESUMING",
      "STOP_COPY>STOP",
      "RESUMING>STOP",
      "PRE_COPY>RUNNING",
      "PRE_COPY>PRE_COPY_P2P",
      "PRE_COPY_P2P>PRE_COPY",
      "PRE_COPY_P2P>RUNNING_P2P",
      "PRE_COPY_P2P>STOP_COPY"
    ]
    expect(
      arcsFor(AllFlags)
        .map((a) => `${a.from}>${a.to}`)
        .sort()
    ).toEqual([...expected].sort())
  })

  it("makes RUNNING<->STOP and PRE_COPY->STOP_COPY direct without P2P", () => {
    for (const flags of [flagsOf(["STOP_COPY"]), flagsOf(["STOP_COPY", "PRE_COPY"])]) {
      expect(isArc(flags, "RUNNING", "STOP")).toBe(true)
      expect(isArc(flags, "STOP", "RUNNING")).toBe(true)
    }
    expect(isArc(flagsOf(["STOP_COPY", "PRE_COPY"]), "PRE_COPY", "STOP_COPY")).toBe(true)
    expect(isArc(AllFlags, "RUNNING", "STOP")).toBe(false)
    expect(isArc(AllFlags, "PRE_COPY", "STOP_COPY")).toBe(false)
  })

  it("never touches a state the flag set does not support, and a device without STOP_COPY has none", () => {
    for (const flags of AllFlagSets) {
      for (const arc of arcsFor(flags)) {
        expect(supportsState(flags, arc.from) && supportsState(flags, arc.to)).toBe(true)
        expect(arc.from === "ERROR" || arc.to === "ERROR").toBe(false)
      }
      if ((flags & 1) === 0) expect(arcsFor(flags)).toEqual([])
    }
  })
})

describe("path: exhaustive over every flag set and every (from, to)", () => {
  for (const flags of AllFlagSets) {
    it(`flags ${flags}: every answer is a legal, rule-abiding, unique shortest path or a named error`, () => {
      let answered = 0
      for (const [from, to] of pairs) {
        const r = path(from, to, flags)
        if (Result.isFailure(r)) continue
        answered++
        const p = r.success
        expect(p[0]).toBe(from)
        expect(p[p.length - 1]).toBe(to)
        for (let i = 0; i + 1 < p.length; i++) expect(isArc(flags, p[i] as State, p[i + 1] as State)).toBe(true)
        expect(obeysInteriorRule(p)).toBe(true)
        if (from === to) {
          expect(p).toEqual([from])
          continue
        }
        const candidates = allSimplePaths(flags, from, to).filter(obeysInteriorRule)
        const shortest = Math.min(...candidates.map((c) => c.length))
        expect(p.length).toBe(shortest)
        expect(candidates.filter((c) => c.length === shortest)).toHaveLength(1)
      }
      if ((flags & 1) === 0) expect(answered).toBe(0)
    })
  }

  it("walking nextState from each intermediate state reproduces the path (the kernel's loop)", () => {
    for (const flags of AllFlagSets) {
      for (const [from, to] of pairs) {
        const r = path(from, to, flags)
        if (Result.isFailure(r)) {
          expect(Result.isFailure(nextState(from, to, flags))).toBe(true)
          continue
        }
        const walked: Array<State> = [from]
        let at = from
        while (at !== to) {
          const n = nextState(at, to, flags)
          if (Result.isFailure(n)) throw new Error(`nextState(${at}, ${to}) failed`)
          at = n.success
          walked.push(at)
        }
        expect(walked).toEqual(r.success)
      }
    }
  })

  it("reduced flag sets agree with the kernel's method: walk the all-flags table, skipping unsupported states", () => {
    for (const flags of AllFlagSets.filter((f) => (f & 1) !== 0 && f !== AllFlags)) {
      for (const [from, to] of pairs) {
        const ours = pathOf(from, to, flags)
        if (typeof ours === "string") continue
        const walked: Array<State> = [from]
        let at = from
        while (at !== to) {
          let next = nextState(at, to, AllFlags)
          while (Result.isSuccess(next) && !supportsState(flags, next.success)) {
            next = nextState(next.success, to, AllFlags)
          }
          if (Result.isFailure(next)) throw new Error(`kernel walk failed at ${at} -> ${to}`)
          at = next.success
          walked.push(at)
        }
        expect(walked, `${from} -> ${to} with flags ${flags}`).toEqual(ours)
      }
    }
  })
})

describe("path: the kernel's documented combination transitions", () => {
  // The multi-step transitions listed above vfio_mig_get_next_state() in drivers/vfio/vfio_main.c.
  const kernel = [
    "PRE_COPY PRE_COPY_P2P STOP_COPY",
    "PRE_COPY RUNNING RUNNING_P2P",
    "PRE_COPY RUNNING RUNNING_P2P STOP",
    "PRE_COPY RUNNING RUNNING_P2P STOP RESUMING",
    "PRE_COPY_P2P RUNNING_P2P RUNNING",
    "PRE_COPY_P2P RUNNING_P2P STOP",
    "PRE_COPY_P2P RUNNING_P2P STOP RESUMING",
    "RESUMING STOP RUNNING_P2P",
    "RESUMING STOP RUNNING_P2P PRE_COPY_P2P",
    "RESUMING STOP RUNNING_P2P RUNNING",
    "RESUMING STOP RUNNING_P2P RUNNING PRE_COPY",
    "RESUMING STOP STOP_COPY",
    "RUNNING RUNNING_P2P PRE_COPY_P2P",
    "RUNNING RUNNING_P2P STOP",
    "RUNNING RUNNING_P2P STOP RESUMING",
    "RUNNING RUNNING_P2P STOP STOP_COPY",
    "RUNNING_P2P RUNNING PRE_COPY",
    "RUNNING_P2P STOP RESUMING",
    "RUNNING_P2P STOP STOP_COPY",
    "STOP RUNNING_P2P PRE_COPY_P2P",
    "STOP RUNNING_P2P RUNNING",
    "STOP RUNNING_P2P RUNNING PRE_COPY",
    "STOP_COPY STOP RESUMING",
    "STOP_COPY STOP RUNNING_P2P",
    "STOP_COPY STOP RUNNING_P2P RUNNING"
  ].map((line) => line.split(" ") as Array<State>)

  it("gives each listed path", () => {
    for (const p of kernel) expect(pathOf(p[0] as State, p[p.length - 1] as State)).toEqual(p)
  })

  it("takes more than one arc for exactly the listed pairs", () => {
    const multi = pairs.filter(([a, b]) => {
      const p = pathOf(a, b)
      return typeof p !== "string" && p.length > 2
    })
    expect(multi.length).toBe(kernel.length)
  })

  it("gives the examples of DESIGN.md", () => {
    expect(pathOf("RUNNING", "STOP_COPY")).toEqual(["RUNNING", "RUNNING_P2P", "STOP", "STOP_COPY"])
    expect(pathOf("PRE_COPY", "STOP")).toEqual(["PRE_COPY", "RUNNING", "RUNNING_P2P", "STOP"])
    expect(pathOf("RESUMING", "PRE_COPY")).toEqual(["RESUMING", "STOP", "RUNNING_P2P", "RUNNING", "PRE_COPY"])
  })
})

describe("path: errors, each naming its case", () => {
  it("refuses a device without STOP_COPY", () => {
    expect(pathOf("RUNNING", "STOP", flagsOf(["P2P", "PRE_COPY"]))).toBe("MissingStopCopy")
    expect(pathOf("RUNNING", "RUNNING", 0)).toBe("MissingStopCopy")
  })

  it("refuses to request ERROR and to leave ERROR", () => {
    for (const s of States) {
      expect(pathOf(s, "ERROR")).toBe(s === "ERROR" ? "FromError" : "ErrorRequested")
      expect(pathOf("ERROR", s)).toBe("FromError")
    }
  })

  it("refuses unsupported optional states as source or target", () => {
    const noP2P = flagsOf(["STOP_COPY", "PRE_COPY"])
    const noPre = flagsOf(["STOP_COPY", "P2P"])
    const r = path("RUNNING", "RUNNING_P2P", noP2P)
    expect(Result.isFailure(r) && r.failure.reason._tag === "UnsupportedState" && r.failure.reason.role === "to").toBe(
      true
    )
    const s = path("PRE_COPY", "RUNNING", noPre)
    expect(
      Result.isFailure(s) && s.failure.reason._tag === "UnsupportedState" && s.failure.reason.role === "from"
    ).toBe(true)
    expect(pathOf("PRE_COPY_P2P", "PRE_COPY_P2P", noPre)).toBe("UnsupportedState")
  })

  it("blocks STOP_COPY -> PRE_COPY and STOP_COPY -> PRE_COPY_P2P, and nothing else that is supported", () => {
    expect(pathOf("STOP_COPY", "PRE_COPY")).toBe("BlockedTransition")
    expect(pathOf("STOP_COPY", "PRE_COPY_P2P")).toBe("BlockedTransition")
    expect(pathOf("STOP_COPY", "PRE_COPY", flagsOf(["STOP_COPY", "PRE_COPY"]))).toBe("BlockedTransition")
    for (const flags of AllFlagSets) {
      for (const [from, to] of pairs) {
        if (pathOf(from, to, flags) !== "BlockedTransition") continue
        expect(from).toBe("STOP_COPY")
        expect(["PRE_COPY", "PRE_COPY_P2P"]).toContain(to)
      }
    }
  })

  it("treats the current state as a successful no-op", () => {
    for (const s of States.filter((x) => x !== "ERROR")) expect(pathOf(s, s)).toEqual([s])
    expect(Result.getOrThrow(nextState("STOP", "STOP", AllFlags))).toBe("STOP")
  })

  it("has messages that read as sentences", () => {
    const r = path("STOP_COPY", "PRE_COPY", AllFlags)
    expect(Result.isFailure(r) && r.failure.message).toContain("STOP_COPY → PRE_COPY")
  })
})

describe("path: properties", () => {
  const state = fc.constantFrom(...States)
  const flags = fc.constantFrom(...AllFlagSets)

  it("every suffix of a path is the path from that point (optimal substructure)", () => {
    fc.assert(
      fc.property(state, state, flags, (from, to, f) => {
        const p = pathOf(from, to, f)
        if (typeof p === "string") return
        for (let i = 1; i < p.length; i++) expect(pathOf(p[i] as State, to, f)).toEqual(p.slice(i))
      })
    )
  })

  it("a path never closes and reopens the saving session", () => {
    fc.assert(
      fc.property(state, state, flags, (from, to, f) => {
        const p = pathOf(from, to, f)
        if (typeof p === "string") return
        const entries = p.filter((s, i) => i > 0 && isSaving(s) && !isSaving(p[i - 1] as State)).length
        expect(entries).toBeLessThanOrEqual(1)
        if (isSaving(from)) expect(entries).toBe(0)
      })
    )
  })
})
