/**
 * What travels on the simulated network: Raft messages between nodes, and client requests and
 * replies between clients and nodes. In-process objects, never mutated after sending (a duplicate
 * delivers the same object twice).
 */
import type { KvCommand, KvResult } from '../control/kv-state-machine';
import type { Message } from '../raft/types';

/** A client's request: a command through the log (writes, log reads, session open) or a ReadIndex read. */
export type ClientRequest =
  | { readonly kind: 'propose'; readonly command: KvCommand }
  | { readonly kind: 'read'; readonly key: string };

/**
 * A node's answer to one attempt. `notLeader` and `dropped` say that THIS attempt was refused
 * before anything was appended; `result` is the outcome of the command (or of the read).
 */
export type NodeReply =
  | { readonly kind: 'result'; readonly result: KvResult }
  | { readonly kind: 'notLeader'; readonly leaderHint: number }
  | { readonly kind: 'dropped'; readonly reason: string };

export type SimPayload =
  | { readonly kind: 'raft'; readonly message: Message }
  | { readonly kind: 'request'; readonly clientId: number; readonly opId: number; readonly attempt: number; readonly request: ClientRequest }
  | { readonly kind: 'reply'; readonly clientId: number; readonly opId: number; readonly attempt: number; readonly reply: NodeReply };

/** Network endpoint of a client: clients live above every node id. */
export const clientEndpointBase = 100;

export function clientEndpoint(clientId: number): number {
  return clientEndpointBase + clientId;
}
