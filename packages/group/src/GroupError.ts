import { Schema } from "effect"
import { GroupProblem } from "./GroupProblem.js"

/** The group description is not valid; `problems` lists every reason, in document order. */
export class InvalidGroup extends Schema.TaggedClass<InvalidGroup>()("InvalidGroup", {
  /** The file the description came from, if any. */
  source: Schema.optionalKey(Schema.String),
  problems: Schema.Array(GroupProblem)
}) {
  get message(): string {
    const prefix = this.source === undefined ? "" : `${this.source}: `
    return this.problems.map((p) => `${prefix}${p.path === "" ? "" : `${p.path}: `}${p.reason}`).join("\n")
  }
}

/** The group file could not be read (missing, a directory, no permission). */
export class GroupFileUnreadable extends Schema.TaggedClass<GroupFileUnreadable>()("GroupFileUnreadable", {
  path: Schema.String,
  /** The system error code, e.g. `ENOENT`, when there is one. */
  code: Schema.UndefinedOr(Schema.String),
  /** The system's own words. */
  detail: Schema.String
}) {
  get message(): string {
    return this.code === "ENOENT"
      ? `${this.path}: no such group file`
      : `${this.path}: cannot read the group file: ${this.detail}`
  }
}

/** The group file was read but is not JSON. */
export class GroupFileNotJson extends Schema.TaggedClass<GroupFileNotJson>()("GroupFileNotJson", {
  path: Schema.String,
  /** The JSON parser's own words. */
  detail: Schema.String
}) {
  get message(): string {
    return `${this.path}: the group file is not valid JSON: ${this.detail}`
  }
}

/** Every reason reading a group can fail for. */
export const GroupErrorReason = Schema.Union([InvalidGroup, GroupFileUnreadable, GroupFileNotJson])

/** The type `GroupErrorReason` decodes to. */
export type GroupErrorReason = typeof GroupErrorReason.Type

/**
 * Reading a group failed: the description is invalid (`InvalidGroup`, every problem with its
 * JSON path), or its file could not be read or is not JSON. Match on `reason._tag`.
 */
export class GroupError extends Schema.TaggedError<GroupError>()("GroupError", { reason: GroupErrorReason }) {
  override get message(): string {
    return this.reason.message
  }

  /** Every problem, `path: reason`; a file that cannot be read or parsed is one problem, of the document itself. */
  get problems(): ReadonlyArray<GroupProblem> {
    return this.reason._tag === "InvalidGroup" ? this.reason.problems : [{ path: "", reason: this.reason.message }]
  }
}
