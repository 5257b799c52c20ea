/**
 * Goal: the recency list behind the descriptor cache keeps least-recently-used order through
 * appends, touches and removals, and refuses double insertion or removal of an unlisted node.
 *
 * Method: operations on small lists compared with the expected order after each step.
 */
import t from 'tap';
import { ListNode, OpenExtentList } from '../../src/extent/open-extent-list';

interface Node extends ListNode<Node> { readonly name: string }
const node = (name: string): Node => ({ name, previous: null, next: null, listed: false });
const order = (list: OpenExtentList<Node>): string[] => [...list.fromOldest()].map((entry) => entry.name);

void t.test('append, touch and remove keep least-recently-used order', async (t) => {
  const list = new OpenExtentList<Node>();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(node) as [Node, Node, Node, Node];
  list.append(a);
  list.append(b);
  list.append(c);
  t.same(order(list), ['a', 'b', 'c']);
  list.touch(a);
  t.same(order(list), ['b', 'c', 'a']);
  list.touch(a);
  t.same(order(list), ['b', 'c', 'a'], 'touching the newest changes nothing');
  list.remove(c);
  t.same(order(list), ['b', 'a']);
  t.equal(list.size, 2);
  list.append(d);
  list.remove(b);
  t.same(order(list), ['a', 'd']);
  list.remove(a);
  list.remove(d);
  t.same(order(list), []);
  t.equal(list.size, 0);
  list.append(c);
  t.same(order(list), ['c'], 'a removed node can be listed again');
});

void t.test('a node cannot be listed twice or removed when not listed', async (t) => {
  const list = new OpenExtentList<Node>();
  const a = node('a');
  t.throws(() => list.remove(a));
  list.append(a);
  t.throws(() => list.append(a));
  t.equal(list.size, 1);
});
