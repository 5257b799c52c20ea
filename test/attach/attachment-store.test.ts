/**
 * Goal: attachment records survive a restart exactly, are replaced atomically, and a bad file
 * never stops the daemon: it is moved aside and named in the problem.
 *
 * Method: a real AttachmentStore in a temp dir; files written by hand for the bad cases, one
 * per validation rule.
 */
import t, { Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AttachmentRecord, AttachmentStore, attachmentsFileBytesMax, attachmentsMax, parseAttachments, serializeAttachments } from '../../src/attach/attachment-store';

const record: AttachmentRecord = {
  volumeId: 'vol-1', volumeName: 'one', backendId: 'cairn:vol-1:0011223344556677', method: 'netlink', index: 3, connections: 2,
  readOnly: false, ioTimeoutSeconds: 30, deadConnTimeoutSeconds: 120, blockBytes: 4096, serverFlags: 0x0d6d, sizeBytes: 1 << 30,
  attachedAtMs: 1_700_000_000_000, state: 'attached',
};

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-records-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

void t.test('records saved are the records loaded, and a missing file is an empty set', async (t) => {
  const dir = tempDir(t);
  const store = new AttachmentStore(dir);
  t.same(store.load(), { records: [] });
  const attaching: AttachmentRecord = { ...record, volumeId: 'vol-2', volumeName: 'two', index: null, state: 'attaching', method: 'ioctl' };
  await store.save([record, attaching]);
  t.same(new AttachmentStore(dir).load(), { records: [record, attaching] });
  await store.save([]);
  t.same(store.load(), { records: [] });
  t.same(readdirSync(dir), ['attachments.json'], 'no temp file left behind');
});

void t.test('saves land in call order even when issued together', async (t) => {
  const dir = tempDir(t);
  const store = new AttachmentStore(dir);
  const sets = [[record], [], [record, { ...record, volumeId: 'vol-9', volumeName: 'nine' }], [{ ...record, index: 7 }]];
  await Promise.all(sets.map((set) => store.save(set)));
  t.same(store.load().records, sets[3]);
});

void t.test('a failed save rejects without blocking later saves', async (t) => {
  const dir = tempDir(t);
  const store = new AttachmentStore(join(dir, 'missing-dir'));
  await t.rejects(store.save([record]), { code: 'ENOENT' });
  const good = new AttachmentStore(dir);
  await good.save([record]);
  t.same(good.load().records, [record]);
});

const bad: Array<[string, unknown]> = [
  ['not JSON', '{'],
  ['not an object', '[]'],
  ['an unknown version', { version: 2, attachments: [] }],
  ['attachments not an array', { version: 1, attachments: {} }],
  ['a record that is not an object', { version: 1, attachments: [7] }],
  ['an empty volume id', { version: 1, attachments: [{ ...record, volumeId: '' }] }],
  ['an unknown method', { version: 1, attachments: [{ ...record, method: 'nbd-client' }] }],
  ['an unknown state', { version: 1, attachments: [{ ...record, state: 'mounted' }] }],
  ['zero connections', { version: 1, attachments: [{ ...record, connections: 0 }] }],
  ['too many connections', { version: 1, attachments: [{ ...record, connections: 65 }] }],
  ['a fractional size', { version: 1, attachments: [{ ...record, sizeBytes: 1.5 }] }],
  ['a block size that is not a power of two', { version: 1, attachments: [{ ...record, blockBytes: 3000 }] }],
  ['readOnly not a boolean', { version: 1, attachments: [{ ...record, readOnly: 'no' }] }],
  ['an attached record without index', { version: 1, attachments: [{ ...record, index: null }] }],
  ['a negative index', { version: 1, attachments: [{ ...record, index: -1 }] }],
  ['a too long backend id', { version: 1, attachments: [{ ...record, backendId: 'x'.repeat(256) }] }],
  ['the same volume twice', { version: 1, attachments: [record, record] }],
  ['too many records', { version: 1, attachments: Array.from({ length: attachmentsMax + 1 }, (_, i) => ({ ...record, volumeId: `v${i}` })) }],
];

for (const [what, content] of bad) {
  void t.test(`a file with ${what} is moved aside and loads as empty`, async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'attachments.json');
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    const { records, problem } = new AttachmentStore(dir).load(42);
    t.same(records, []);
    t.match(problem, /moved to .*attachments\.json\.corrupt-42/);
    t.notOk(existsSync(path));
    t.ok(existsSync(`${path}.corrupt-42`), 'kept for inspection');
  });
}

void t.test('an oversized file is refused before it is read', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'attachments.json'), Buffer.alloc(attachmentsFileBytesMax + 1, 0x20));
  t.match(new AttachmentStore(dir).load(1).problem, /more than 1048576/);
});

void t.test('serializing validates every record (a bug never reaches the disk)', async (t) => {
  t.throws(() => serializeAttachments([{ ...record, connections: 0 }]), /connections/);
  t.same(parseAttachments(serializeAttachments([record])), [record]);
});
