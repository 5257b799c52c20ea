/**
 * The protobuf messages of src/wire/cairn.proto, typed. This module is the only door to
 * src/wire/generated/: it loads the static module at run time (`cairn-static.ts`, compiled by tsc
 * like any source file) and gives it the types pbts generated (`cairn.d.ts`). See gen-proto.sh
 * for why the generated code is split that way.
 *
 * 64-bit fields decode as `Long` objects (protobufjs uses the `long` package when present) and
 * accept `number | Long` on encode; src/meta/codec.ts converts them to safe integers and rejects
 * anything past 2^53. Callers outside wire/ and meta/codec should not handle Long at all.
 */
import type { cairn } from './generated/cairn';

interface GeneratedModule {
  readonly cairn: typeof cairn;
}

// A plain require: the static module is a CommonJS script whose declared types live in
// generated/cairn.d.ts, which TypeScript cannot attach to an `import` of a script file.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const generated = require('./generated/cairn-static') as GeneratedModule;

/** The `cairn.v1` message classes and enums. */
export const pb = generated.cairn.v1;

// Re-exported types of the messages, named after the proto messages.
export type Label = cairn.v1.Label;
export type NodeRecordMessage = cairn.v1.NodeRecord;
export type DriveRecordMessage = cairn.v1.DriveRecord;
export type ProfileRecordMessage = cairn.v1.ProfileRecord;
export type VolumeRecordMessage = cairn.v1.VolumeRecord;
export type ExtentRecordMessage = cairn.v1.ExtentRecord;
export type ExtentPlacementsMessage = cairn.v1.ExtentPlacements;
export type CommandMessage = cairn.v1.Command;
export type CommandResultMessage = cairn.v1.CommandResult;
export type RememberedRequestMessage = cairn.v1.RememberedRequest;
export type MapSnapshotMessage = cairn.v1.MapSnapshot;
export type AppliedStateMessage = cairn.v1.AppliedState;
export type NodeState = cairn.v1.NodeState;
export type DriveState = cairn.v1.DriveState;
export type VolumeState = cairn.v1.VolumeState;
export type PlacementPolicy = cairn.v1.PlacementPolicy;
// Plain-object forms ($Properties): what encode accepts and nested fields hold after decode.
export type NodeRecordFields = cairn.v1.NodeRecord.$Properties;
export type DriveRecordFields = cairn.v1.DriveRecord.$Properties;
export type ProfileRecordFields = cairn.v1.ProfileRecord.$Properties;
export type VolumeRecordFields = cairn.v1.VolumeRecord.$Properties;
export type ExtentRecordFields = cairn.v1.ExtentRecord.$Properties;
export type ExtentPlacementsFields = cairn.v1.ExtentPlacements.$Properties;
export type CommandResultFields = cairn.v1.CommandResult.$Properties;
export type RememberedRequestFields = cairn.v1.RememberedRequest.$Properties;
/** A 64-bit field as protobufjs hands it out: a number on encode, usually a Long after decode. */
export type Uint64 = cairn.v1.NodeRecord['joinedAtMs'];

/** Encodes a message of type `type` to bytes. */
export function encodeMessage<T>(type: { encode(message: T): { finish(): Uint8Array } }, message: T): Uint8Array {
  return type.encode(message).finish();
}
