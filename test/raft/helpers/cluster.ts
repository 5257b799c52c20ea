/**
 * An in-process cluster of RawNodes for tests: each node has a MemoryStorage that holds exactly
 * what its Readys persisted, a toy state machine (the list of applied payloads, serialized into
 * snapshots), and a shared in-flight message queue with per-link blocking. A crash discards the
 * RawNode and everything it had not persisted; a restart rebuilds it from storage.
 */
import { decodeConfChange } from '../../../src/raft/conf-change-codec';
import type { RaftConfigInput } from '../../../src/raft/config';
import { ConfChangeError } from '../../../src/raft/errors';
import { MemoryStorage } from '../../../src/raft/memory-storage';
import { RawNode } from '../../../src/raft/raw-node';
import type { ConfState, Entry, Message, Ready } from '../../../src/raft/types';
import { SeededRandom } from '../../../src/util/random';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeState(state: readonly string[]): Uint8Array {
  return encoder.encode(JSON.stringify(state));
}

export function decodeState(data: Uint8Array): string[] {
  if (data.length === 0) return [];
  const parsed: unknown = JSON.parse(decoder.decode(data));
  if (!Array.isArray(parsed)) throw new TypeError('snapshot data is not a list');
  return parsed.map(String);
}

export class TestNode {
  node: RawNode | undefined;
  /** Payloads of applied normal entries, in order: the state machine. */
  state: string[] = [];
  appliedIndex: number;
  confState: ConfState;
  private incarnation = 0;

  constructor(readonly id: number, readonly config: RaftConfigInput, readonly storage: MemoryStorage, private readonly seed: number) {
    const snapshot = storage.snapshot();
    this.appliedIndex = snapshot.metadata.index;
    this.confState = snapshot.metadata.confState;
    this.state = decodeState(snapshot.data);
    this.node = new RawNode({ ...config, applied: this.appliedIndex }, storage, new SeededRandom(seed * 1000 + id));
  }

  get raw(): RawNode {
    if (this.node === undefined) throw new Error(`node ${this.id} is down`);
    return this.node;
  }

  crash(): void {
    this.node = undefined;
  }

  restart(): void {
    const snapshot = this.storage.snapshot();
    this.appliedIndex = snapshot.metadata.index;
    this.confState = snapshot.metadata.confState;
    this.state = decodeState(snapshot.data);
    this.incarnation++;
    const random = new SeededRandom(this.seed * 1000 + this.id + this.incarnation * 7919);
    this.node = new RawNode({ ...this.config, applied: this.appliedIndex }, this.storage, random);
  }
}

export interface ApplyEvent {
  readonly node: TestNode;
  readonly entry: Entry;
}

export class Cluster {
  readonly nodes = new Map<number, TestNode>();
  /** Messages sent and not yet delivered, in send order. */
  inbox: Message[] = [];
  /** Blocked links "from->to": messages on them are dropped. */
  readonly blocked = new Set<string>();
  onApply: ((event: ApplyEvent) => void) | undefined = undefined;
  onReady: ((node: TestNode, ready: Ready) => void) | undefined = undefined;

  constructor(readonly seed: number) {}

  add(id: number, config: RaftConfigInput, storage: MemoryStorage): TestNode {
    const node = new TestNode(id, config, storage, this.seed);
    this.nodes.set(id, node);
    return node;
  }

  get(id: number): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  ids(): number[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  isBlocked(from: number, to: number): boolean {
    return this.blocked.has(`${from}->${to}`);
  }

  /** Handles one Ready exactly as a driver must: persist, send, apply, advance. */
  processReady(id: number): Ready | undefined {
    const node = this.get(id);
    const raw = node.node;
    if (raw === undefined || !raw.hasReady()) return undefined;
    const ready = raw.ready();
    this.onReady?.(node, ready);
    if (ready.snapshot !== undefined) node.storage.applySnapshot(ready.snapshot);
    node.storage.append(ready.entries);
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
    for (const m of ready.messages) {
      if (!this.isBlocked(m.from, m.to)) this.inbox.push(m);
    }
    if (ready.snapshot !== undefined) {
      node.state = decodeState(ready.snapshot.data);
      node.appliedIndex = ready.snapshot.metadata.index;
      node.confState = ready.snapshot.metadata.confState;
    }
    for (const entry of ready.committedEntries) {
      if (entry.type === 'confChange') {
        try {
          node.confState = raw.applyConfChange(decodeConfChange(entry.data));
        } catch (error) {
          if (!(error instanceof ConfChangeError)) throw error;
        }
      } else if (entry.data.length > 0) {
        node.state.push(decoder.decode(entry.data));
      }
      node.appliedIndex = entry.index;
      this.onApply?.({ node, entry });
    }
    raw.advance(ready);
    return ready;
  }

  /** Removes and returns the queued messages addressed to `id`. */
  takeMessagesTo(id: number): Message[] {
    const taken = this.inbox.filter((m) => m.to === id);
    this.inbox = this.inbox.filter((m) => m.to !== id);
    return taken;
  }

  /** Steps one message into its target unless the target is down or the link blocked. */
  deliver(m: Message): boolean {
    const target = this.nodes.get(m.to);
    if (target?.node === undefined || this.isBlocked(m.from, m.to)) return false;
    try {
      target.node.step(m);
    } catch (error) {
      // A response from a node outside the configuration is refused, as a driver would log it.
      if (!(error instanceof Error && 'code' in error && error.code === 'RAFT_STEP_PEER_NOT_FOUND')) throw error;
    }
    return true;
  }

  crash(id: number): void {
    this.get(id).crash();
    this.inbox = this.inbox.filter((m) => m.to !== id);
  }

  restart(id: number): void {
    this.get(id).restart();
  }

  /** Blocks every link between the groups (both directions); ids not listed stay connected. */
  partition(groups: readonly (readonly number[])[]): void {
    for (const [i, group] of groups.entries()) {
      for (const [j, other] of groups.entries()) {
        if (i === j) continue;
        for (const from of group) for (const to of other) this.blocked.add(`${from}->${to}`);
      }
    }
  }

  heal(): void {
    this.blocked.clear();
  }

  /** The committed log prefix as a node sees it, from storage. */
  storedEntries(id: number): Entry[] {
    const storage = this.get(id).storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    return last < first ? [] : storage.entries(first, last + 1, Number.MAX_SAFE_INTEGER);
  }
}
