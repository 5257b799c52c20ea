/**
 * Public API of the Raft library: RawNode, the storage contract and MemoryStorage, the data types,
 * the typed errors and the configuration. Everything else in this folder is internal.
 */
export { RawNode, type RaftStatus, type ProgressStatus } from './raw-node';
export { type RaftConfig, type RaftConfigInput, raftConfigDefaults, resolveRaftConfig } from './config';
export { type RaftStorage, type InitialState, entryBytes, entryOverheadBytes } from './storage';
export { MemoryStorage } from './memory-storage';
export { encodeConfChange, decodeConfChange, describeConfChange } from './conf-change-codec';
export * from './errors';
export * from './types';
