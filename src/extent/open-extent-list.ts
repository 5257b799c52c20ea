/**
 * OpenExtentList: the recency order of the extent store's open file descriptors, as an
 * intrusive doubly linked list (no allocation per touch, O(1) touch / remove / append).
 * Pure data structure: it never opens or closes anything; the store decides what to evict.
 *
 * Invariant: a node is in at most one list; `size` counts the nodes in this list.
 */
import { assert } from '../util/assert';

export interface ListNode<T> {
  previous: T | null;
  next: T | null;
  listed: boolean;
}

export class OpenExtentList<T extends ListNode<T>> {
  private head: T | null = null; // least recently used
  private tail: T | null = null; // most recently used
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Appends a node that is in no list as the most recently used. */
  append(node: T): void {
    assert(!node.listed, 'node is not in a list yet');
    node.previous = this.tail;
    node.next = null;
    if (this.tail === null) this.head = node;
    else this.tail.next = node;
    this.tail = node;
    node.listed = true;
    this.count++;
  }

  remove(node: T): void {
    assert(node.listed, 'node is in the list');
    if (node.previous === null) this.head = node.next;
    else node.previous.next = node.next;
    if (node.next === null) this.tail = node.previous;
    else node.next.previous = node.previous;
    node.previous = null;
    node.next = null;
    node.listed = false;
    this.count--;
    assert(this.count >= 0);
  }

  /** Marks a listed node as the most recently used. */
  touch(node: T): void {
    if (this.tail === node) return;
    this.remove(node);
    this.append(node);
  }

  /** Nodes from least to most recently used. Do not remove nodes while iterating. */
  *fromOldest(): Generator<T> {
    for (let node = this.head; node !== null; node = node.next) yield node;
  }
}
