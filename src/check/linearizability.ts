/**
 * The Wing & Gong linearizability search (1993) with Lowe's memoization (2017), as Porcupine
 * implements it, over any sequential model, extended for operations whose outcome is unknown.
 * Owns the search only; what an operation means is the model's business (kv-model.ts), splitting
 * a history per key is check-history.ts's.
 *
 * Method:
 * 1. Operations are numbered by call time (their "id"). An operation with a known outcome gets a
 *    call entry and a return entry in the main list, sorted by time — calls before returns on
 *    ties, so an operation that starts exactly when another ends counts as concurrent with it.
 *    An operation with an unknown outcome (return time +∞: it may take effect at any time after
 *    its call, or never) gets only a call entry, in a second list sorted by call time, so that
 *    one never placed does not lengthen every walk of the main list. Both lists are doubly
 *    linked behind head sentinels (dancing links).
 * 2. A configuration is (placed operations, model state). Its candidates are the calls before the
 *    first return entry of the main list (the "blocking" return). A candidate is placed if the
 *    model accepts it and (placed + it, new state) is not in the cache: remember that pair, push
 *    it with the old state, lift its entries out of the lists, and go on from the new
 *    configuration.
 * 3. When no candidate is left to try, the blocking operation must be placed before anything
 *    else and cannot be: a dead end. Pop the last placement, relink its entries (in the reverse
 *    order of unlinking) and try the candidates after it. A dead end with an empty stack means no
 *    linearization exists.
 * 4. Success as soon as every operation with a known outcome is placed; operations with unknown
 *    outcomes left unplaced never took effect.
 *
 * Candidate order decides speed, and one filter keeps unknown operations from multiplying the
 * search:
 * - Forced moves first: a read-only operation (`isReadOnly`) with a known outcome that the model
 *   accepts now. Never undone alone: any linearization placing it later can place it now (it is
 *   concurrent with every unplaced operation and observes the current state), so when one is
 *   popped, the configuration before it fails too and popping goes on.
 * - Then the other candidates, earliest deadline first: an operation with a known outcome by its
 *   return time, one with an unknown outcome by the return time of the earliest candidate it
 *   enables (one the model refuses now and accepts right after it).
 * - For an `overwriting` model, an operation with an unknown outcome is a candidate only if it
 *   enables some candidate. Complete: in such a model any linearization can be rewritten so that
 *   each unknown operation is followed by an operation it enables — remove it when the next
 *   operation is legal without it (a blind write, or any operation whose result does not depend
 *   on the state it finds), and move it past a read-only operation that is legal without it.
 *   Without the filter, pending unknown operations would be tried everywhere, and "placed, then
 *   overwritten" would multiply the configurations by every subset of them. For other models
 *   they are candidates everywhere, last.
 *
 * Memoization: the cache holds configurations. A set is hashed incrementally (Zobrist: XOR of a
 * fixed pseudo-random 64-bit pattern per operation) and stored compactly as its maximum id plus
 * the ids below it that are missing ("holes"; few, because placements follow call order closely),
 * or as a bitmap copy when that is smaller. Equality is exact, never by hash alone: a false cache
 * hit could turn a linearizable history into a reported violation.
 *
 * Bounds: at most `searchOperationsMax` operations per search; the caller passes `stepsMax` (a
 * step is one list entry or candidate looked at) and gets verdict `unknown` when it runs out —
 * never a guess. The cache gains at most one entry per step, so `stepsMax` bounds memory too.
 *
 * Diagnostics: at the deepest dead end the search keeps the prefix it had placed, the state after
 * it, the blocking operation and the candidates the model refused (Porcupine's visualizer shows
 * the same). Pure: no I/O, no clock, deterministic.
 */
import { assert } from '../util/assert';

/** Most operations in one search (per key); ids and list links are 32-bit. */
export const searchOperationsMax = 1 << 24;
/** Most steps a caller may allow: the cache is a Map, which holds at most 2^24 entries. */
export const searchStepsLimit = 16_000_000;

/** A sequential specification: a deterministic state machine whose operations carry their output. */
export interface SequentialModel<State, Operation> {
  readonly initialState: State;
  /** The state after `operation`, or undefined when its recorded output is impossible in `state`. */
  step(state: State, operation: Operation): State | undefined;
  /** Any 32-bit integer; equal states must hash equally. */
  hashState(state: State): number;
  equalStates(a: State, b: State): boolean;
  /** Optional: true for an operation that never changes the state (a read); see forced moves. */
  isReadOnly?(operation: Operation): boolean;
  /**
   * Optional: true when every operation either leaves the state unchanged or, when legal, sets it
   * to a value that depends on the operation alone (a register: reads, writes, cas). Lets the
   * search place an operation with an unknown outcome only where it enables another (see the
   * module comment).
   */
  readonly overwriting?: boolean;
}

export interface TimedOperation<Operation> {
  readonly operation: Operation;
  readonly callNs: number;
  /** +Infinity when the outcome is unknown: it may take effect at any time after its call, or never. */
  readonly returnNs: number;
}

export interface SearchLimits {
  /**
   * Steps (list entries and candidates looked at) before giving up with verdict `unknown`; the
   * search may overshoot by the candidates of one configuration.
   */
  readonly stepsMax: number;
}

export interface Linearizable {
  readonly verdict: 'linearizable';
  readonly steps: number;
  /** Indices into the input in a legal order; unknown-outcome operations left out never took effect. */
  readonly order: readonly number[];
}

export interface Illegal<State> {
  readonly verdict: 'illegal';
  readonly steps: number;
  /** The operations placed at the deepest dead end (indices into the input, in order). */
  readonly prefix: readonly number[];
  readonly stateAfterPrefix: State;
  /** The operation that returned before it could be placed after the prefix. */
  readonly blocking: number;
  /**
   * Every operation the search tried to place right after the prefix (those called before
   * `blocking` returned); the model refuses each in `stateAfterPrefix`.
   */
  readonly candidates: readonly number[];
}

export interface Undecided {
  readonly verdict: 'unknown';
  readonly steps: number;
  /** The longest prefix placed before the budget ran out. */
  readonly deepestPrefixLength: number;
}

export type SearchResult<State> = Linearizable | Illegal<State> | Undecided;

/** Searches for a linearization of `operations` under `model`; see the module comment. */
export function searchLinearization<State, Operation>(
  model: SequentialModel<State, Operation>,
  operations: ReadonlyArray<TimedOperation<Operation>>,
  limits: SearchLimits,
): SearchResult<State> {
  assert(operations.length <= searchOperationsMax, `at most ${searchOperationsMax} operations per search`);
  assert(Number.isSafeInteger(limits.stepsMax), 'stepsMax must be an integer');
  assert(limits.stepsMax > 0, 'stepsMax must be positive');
  assert(limits.stepsMax <= searchStepsLimit, `stepsMax must be at most ${searchStepsLimit}`);
  for (const operation of operations) {
    assert(Number.isFinite(operation.callNs), 'callNs must be finite');
    assert(operation.returnNs >= operation.callNs, 'returnNs must not be before callNs');
  }
  return new Search(model, operations).run(limits.stepsMax);
}

const kindCall = 0;
const kindReturn = 1;
/** The end of a list. */
const none = -1;

/** A candidate of the current configuration, in the order it is tried. */
interface Choice {
  readonly entry: number;
  readonly deadlineNs: number;
}

interface CacheEntry<State> {
  readonly state: State;
  readonly maxId: number;
  /** Ids below maxId not in the set, or null when `words` holds a bitmap copy instead. */
  readonly holes: Int32Array | null;
  readonly words: Uint32Array | null;
}

const noHoles = new Int32Array(0);

class Search<State, Operation> {
  /** Caller's index of each id (ids are in call order). */
  private readonly indexOfId: Int32Array;
  // The main list and the unknown list share these arrays (see the module comment).
  private readonly mainHead: number;
  private readonly unknownHead: number;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly entryId: Int32Array;
  private readonly entryKind: Uint8Array;
  /** 1 for the call entry of a read-only operation with a known outcome: a forced move. */
  private readonly entryForced: Uint8Array;
  private readonly callEntry: Int32Array;
  /** The return entry of each id, `none` when its outcome is unknown. */
  private readonly returnEntry: Int32Array;

  // Search state. Invariant: `placedIds` holds exactly the ids of stackEntries[0..depth).
  private readonly placedIds: Uint32Array;
  private readonly patternLow: Uint32Array;
  private readonly patternHigh: Uint32Array;
  private hashLow = 0;
  private hashHigh = 0;
  private maxId = -1;
  private depth = 0;
  /** Operations with a known outcome not yet placed; the search succeeds when none is left. */
  private knownRemaining = 0;
  private readonly stackEntries: Int32Array;
  private readonly stackStates: State[] = [];
  private readonly stackMaxIds: Int32Array;
  /** The deadline each placement was chosen with, to resume after it in the parent's order. */
  private readonly stackDeadlines: Float64Array;
  private readonly cache = new Map<number, Array<CacheEntry<State>>>();
  private state: State;
  // What the current configuration offers, computed on first use and dropped on every move.
  private blocking = none;
  private refused: number[] = [];
  private choices: Choice[] | null = null;
  private deepest = 0;
  private best: Illegal<State> | undefined;
  private bestDepth = -1;

  constructor(
    private readonly model: SequentialModel<State, Operation>,
    private readonly operations: ReadonlyArray<TimedOperation<Operation>>,
  ) {
    const count = operations.length;
    this.indexOfId = Int32Array.from(operations.keys()).sort((a, b) => operations[a]!.callNs - operations[b]!.callNs || a - b);
    const events: Array<{ timeNs: number; kind: number; id: number }> = [];
    const unknownIds: number[] = [];
    for (let id = 0; id < count; id++) {
      const operation = operations[this.indexOfId[id]!]!;
      if (operation.returnNs === Infinity) {
        unknownIds.push(id);
        continue;
      }
      events.push({ timeNs: operation.callNs, kind: kindCall, id }, { timeNs: operation.returnNs, kind: kindReturn, id });
      this.knownRemaining += 1;
    }
    events.sort((a, b) => a.timeNs - b.timeNs || a.kind - b.kind || a.id - b.id);
    const mainEntries = events.length;
    for (const id of unknownIds) events.push({ timeNs: operations[this.indexOfId[id]!]!.callNs, kind: kindCall, id });

    const entries = events.length;
    this.mainHead = entries;
    this.unknownHead = entries + 1;
    this.next = new Int32Array(entries + 2);
    this.prev = new Int32Array(entries + 2);
    this.entryId = new Int32Array(entries);
    this.entryKind = new Uint8Array(entries);
    this.entryForced = new Uint8Array(entries);
    this.callEntry = new Int32Array(count);
    this.returnEntry = new Int32Array(count).fill(none);
    const linkRange = (listHead: number, first: number, end: number): void => {
      this.next[listHead] = first < end ? first : none;
      for (let entry = first; entry < end; entry++) {
        this.next[entry] = entry + 1 < end ? entry + 1 : none;
        this.prev[entry] = entry === first ? listHead : entry - 1;
      }
    };
    linkRange(this.mainHead, 0, mainEntries);
    linkRange(this.unknownHead, mainEntries, entries);
    events.forEach((event, entry) => {
      this.entryId[entry] = event.id;
      this.entryKind[entry] = event.kind;
      if (event.kind === kindReturn) {
        this.returnEntry[event.id] = entry;
        return;
      }
      this.callEntry[event.id] = entry;
      const operation = operations[this.indexOfId[event.id]!]!;
      if (operation.returnNs !== Infinity && model.isReadOnly?.(operation.operation) === true) this.entryForced[entry] = 1;
    });

    this.placedIds = new Uint32Array(Math.ceil(count / 32));
    this.patternLow = new Uint32Array(count);
    this.patternHigh = new Uint32Array(count);
    for (let id = 0; id < count; id++) {
      this.patternLow[id] = mix32(2 * id + 1);
      this.patternHigh[id] = mix32(2 * id + 2 + 0x9e3779b9);
    }
    this.stackEntries = new Int32Array(count);
    this.stackMaxIds = new Int32Array(count);
    this.stackDeadlines = new Float64Array(count);
    this.state = model.initialState;
  }

  run(stepsMax: number): SearchResult<State> {
    let steps = 0;
    /** The next main-list entry to look at for a forced move, or `none` once they are done. */
    let forcedEntry = this.next[this.mainHead]!;
    /** The last choice tried in this configuration, as (deadline, id); none tried: (-∞, none). */
    let afterNs = -Infinity;
    let afterId = none;
    while (this.knownRemaining > 0) {
      if (steps >= stepsMax) return { verdict: 'unknown', steps, deepestPrefixLength: this.deepest };
      steps += 1;
      if (forcedEntry !== none) {
        const entry = forcedEntry;
        forcedEntry = this.entryKind[entry] === kindReturn ? none : this.next[entry]!;
        if (this.entryForced[entry] === 1 && this.maybePlace(entry, 0)) forcedEntry = this.next[this.mainHead]!;
        continue;
      }
      if (this.choices === null) steps += this.offer();
      const choice = this.choices!.find((c) => c.deadlineNs > afterNs || (c.deadlineNs === afterNs && this.entryId[c.entry]! > afterId));
      if (choice !== undefined) {
        afterNs = choice.deadlineNs;
        afterId = this.entryId[choice.entry]!;
        if (this.maybePlace(choice.entry, choice.deadlineNs)) {
          forcedEntry = this.next[this.mainHead]!;
          afterNs = -Infinity;
          afterId = none;
        }
        continue;
      }
      this.maybeRecordDeadEnd();
      let undone: number;
      do {
        if (this.depth === 0) return { ...this.best!, steps };
        undone = this.pop();
      } while (this.entryForced[undone] === 1);
      afterNs = this.stackDeadlines[this.depth]!;
      afterId = this.entryId[undone]!;
    }
    return { verdict: 'linearizable', steps, order: this.placedPrefix() };
  }

  /** Places the operation of call entry `entry` if the model and the cache allow; whether it did. */
  private maybePlace(entry: number, deadlineNs: number): boolean {
    const id = this.entryId[entry]!;
    const nextState = this.model.step(this.state, this.operationOf(id));
    if (nextState === undefined || !this.maybeRemember(id, nextState)) return false;
    this.push(entry, nextState, deadlineNs);
    return true;
  }

  /**
   * Computes what the current configuration offers: the blocking return, the candidates the
   * model refuses now, and the choices in the order they are tried. Returns the steps it took.
   */
  private offer(): number {
    let steps = 0;
    const refused: number[] = [];
    const choices: Choice[] = [];
    let e = this.next[this.mainHead]!;
    for (; e !== none && this.entryKind[e] === kindCall; e = this.next[e]!) {
      steps += 1;
      const id = this.entryId[e]!;
      if (this.model.step(this.state, this.operationOf(id)) === undefined) refused.push(id);
      else if (this.entryForced[e] === 0) choices.push({ entry: e, deadlineNs: this.operations[this.indexOfId[id]!]!.returnNs });
    }
    assert(e !== none, 'an unplaced operation with a known outcome has a return entry');
    const limitNs = this.operations[this.indexOfId[this.entryId[e]!]!]!.returnNs;
    const unknown: Array<{ entry: number; nextState: State }> = [];
    for (let u = this.next[this.unknownHead]!; u !== none && this.operations[this.indexOfId[this.entryId[u]!]!]!.callNs <= limitNs; u = this.next[u]!) {
      steps += 1;
      const id = this.entryId[u]!;
      const nextState = this.model.step(this.state, this.operationOf(id));
      if (nextState === undefined) refused.push(id);
      else unknown.push({ entry: u, nextState });
    }
    for (const { entry, nextState } of unknown) {
      const deadlineNs = this.model.overwriting === true ? this.earliestEnabled(nextState, refused) : Infinity;
      if (deadlineNs !== undefined) choices.push({ entry, deadlineNs });
    }
    choices.sort((a, b) => a.deadlineNs - b.deadlineNs || this.entryId[a.entry]! - this.entryId[b.entry]!);
    this.blocking = e;
    this.refused = refused;
    this.choices = choices;
    return steps;
  }

  /** The earliest return among the refused candidates that `nextState` enables; undefined: none. */
  private earliestEnabled(nextState: State, refused: readonly number[]): number | undefined {
    let earliestNs: number | undefined;
    for (const other of refused) {
      if (this.model.step(nextState, this.operationOf(other)) === undefined) continue;
      const returnNs = this.operations[this.indexOfId[other]!]!.returnNs;
      earliestNs = Math.min(earliestNs ?? Infinity, returnNs);
    }
    return earliestNs;
  }

  private operationOf(id: number): Operation {
    return this.operations[this.indexOfId[id]!]!.operation;
  }

  /** Adds (placed + id, nextState) to the cache; false when it is there already. */
  private maybeRemember(id: number, nextState: State): boolean {
    const members = this.depth + 1;
    const nextMaxId = Math.max(this.maxId, id);
    const stateHash = this.model.hashState(nextState) | 0;
    const low = (this.hashLow ^ this.patternLow[id]! ^ mix32(stateHash)) >>> 0;
    const high = (this.hashHigh ^ this.patternHigh[id]! ^ mix32(stateHash ^ 0x5bd1e995)) & 0x1fffff;
    const key = low * 0x200000 + high;
    this.setPlaced(id, true);
    const bucket = this.cache.get(key);
    const seen = bucket?.some((cached) => this.sameSet(cached, members, nextMaxId) && this.model.equalStates(cached.state, nextState)) ?? false;
    if (!seen) {
      const remembered = this.snapshot(nextState, members, nextMaxId);
      if (bucket === undefined) this.cache.set(key, [remembered]);
      else bucket.push(remembered);
    }
    this.setPlaced(id, false);
    return !seen;
  }

  /** Whether the placed set (`members` ids, the largest `setMaxId`) equals the cached one. */
  private sameSet(cached: CacheEntry<State>, members: number, setMaxId: number): boolean {
    if (cached.maxId !== setMaxId) return false;
    if (cached.words !== null) return cached.words.every((word, w) => word === this.placedIds[w]);
    const holes = cached.holes!;
    // Disjoint from the holes, and as many members as [0, maxId] minus the holes: the same set.
    if (holes.length !== setMaxId + 1 - members) return false;
    return holes.every((hole) => !this.isPlaced(hole));
  }

  private snapshot(target: State, members: number, setMaxId: number): CacheEntry<State> {
    const holeCount = setMaxId + 1 - members;
    const wordCount = (setMaxId >>> 5) + 1;
    if (holeCount > wordCount) return { state: target, maxId: setMaxId, holes: null, words: this.placedIds.slice(0, wordCount) };
    if (holeCount === 0) return { state: target, maxId: setMaxId, holes: noHoles, words: null };
    const holes = new Int32Array(holeCount);
    let found = 0;
    for (let w = 0; w < wordCount; w++) {
      let missing = ~this.placedIds[w]!;
      if (w === wordCount - 1 && (setMaxId & 31) !== 31) missing &= (1 << ((setMaxId & 31) + 1)) - 1;
      while (missing !== 0) {
        const lowest = missing & -missing;
        holes[found++] = w * 32 + 31 - Math.clz32(lowest);
        missing ^= lowest;
      }
    }
    assert(found === holeCount, 'the hole count matches the set size');
    return { state: target, maxId: setMaxId, holes, words: null };
  }

  /** Places the operation whose call entry is `entry`. */
  private push(entry: number, nextState: State, deadlineNs: number): void {
    const id = this.entryId[entry]!;
    this.stackEntries[this.depth] = entry;
    this.stackStates[this.depth] = this.state;
    this.stackMaxIds[this.depth] = this.maxId;
    this.stackDeadlines[this.depth] = deadlineNs;
    this.depth += 1;
    this.deepest = Math.max(this.deepest, this.depth);
    this.choices = null;
    const returnAt = this.returnEntry[id]!;
    if (returnAt !== none) this.knownRemaining -= 1;
    this.state = nextState;
    this.maxId = Math.max(this.maxId, id);
    this.hashLow ^= this.patternLow[id]!;
    this.hashHigh ^= this.patternHigh[id]!;
    this.setPlaced(id, true);
    this.unlink(this.callEntry[id]!);
    if (returnAt !== none) this.unlink(returnAt);
  }

  /** Undoes the last placement; returns its call entry. */
  private pop(): number {
    assert(this.depth > 0, 'pop needs a placement to undo');
    this.depth -= 1;
    this.choices = null;
    const entry = this.stackEntries[this.depth]!;
    const id = this.entryId[entry]!;
    const returnAt = this.returnEntry[id]!;
    if (returnAt !== none) this.knownRemaining += 1;
    this.state = this.stackStates[this.depth]!;
    this.maxId = this.stackMaxIds[this.depth]!;
    this.hashLow ^= this.patternLow[id]!;
    this.hashHigh ^= this.patternHigh[id]!;
    this.setPlaced(id, false);
    if (returnAt !== none) this.relink(returnAt);
    this.relink(this.callEntry[id]!);
    return entry;
  }

  /**
   * Keeps the explanation of the deepest dead end. It is the first visit to its depth — reaching
   * a greater depth means a dead end there before any pop back — so the cache holds no set one
   * larger and every choice was placed or refused: no choice was left. The model refused every
   * candidate with a known outcome; those with an unknown outcome that it accepts enable nothing
   * and are left out of the explanation.
   */
  private maybeRecordDeadEnd(): void {
    if (this.depth <= this.bestDepth) return;
    this.bestDepth = this.depth;
    assert(this.choices !== null && this.choices.length === 0, 'at the deepest dead end the model refused every choice');
    const candidates = this.refused.map((id) => this.indexOfId[id]!);
    const blocking = this.indexOfId[this.entryId[this.blocking]!]!;
    this.best = { verdict: 'illegal', steps: 0, prefix: this.placedPrefix(), stateAfterPrefix: this.state, blocking, candidates };
  }

  /** The caller's indices of the placed operations, in order. */
  private placedPrefix(): number[] {
    return Array.from(this.stackEntries.subarray(0, this.depth), (entry) => this.indexOfId[this.entryId[entry]!]!);
  }

  private isPlaced(id: number): boolean {
    return (this.placedIds[id >>> 5]! & (1 << (id & 31))) !== 0;
  }

  private setPlaced(id: number, value: boolean): void {
    if (value) this.placedIds[id >>> 5]! |= 1 << (id & 31);
    else this.placedIds[id >>> 5]! &= ~(1 << (id & 31));
  }

  private unlink(entry: number): void {
    const before = this.prev[entry]!;
    const after = this.next[entry]!;
    this.next[before] = after;
    if (after !== none) this.prev[after] = before;
  }

  private relink(entry: number): void {
    const before = this.prev[entry]!;
    const after = this.next[entry]!;
    this.next[before] = entry;
    if (after !== none) this.prev[after] = entry;
  }
}

/** A 32-bit integer finalizer (MurmurHash3 fmix32): spreads every input bit over the output. */
function mix32(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
