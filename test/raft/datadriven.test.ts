// Goal: pin Raft behaviour in readable scripts — each subtle bug from reference/raft.md §4 has a
// scenario in test/raft/testdata/*.txt whose full trace (Readys, messages, states) is compared
// line by line.
// Method: a datadriven runner. Each file holds directives `command args\n----\nexpected output`
// separated by blank lines (`#` lines are comments). RAFT_REWRITE=1 regenerates the expected
// blocks in place; commit such a diff only when you understand every changed line.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { InteractionEnv } from './helpers/interaction';

type Segment = { kind: 'text'; text: string } | { kind: 'directive'; line: number; command: string; expected: string };

function parse(file: string, text: string): Segment[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const segments: Segment[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) {
      segments.push({ kind: 'text', text: line });
      i++;
      continue;
    }
    const start = i + 1;
    if (lines[i + 1] !== '----') throw new Error(`${file}:${start}: expected '----' after "${line}"`);
    i += 2;
    const expected: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== '') expected.push(lines[i++] as string);
    segments.push({ kind: 'directive', line: start, command: line, expected: expected.join('\n') });
  }
  return segments;
}

const rewrite = process.env.RAFT_REWRITE === '1';
const directory = path.join(__dirname, 'testdata');
const files = readdirSync(directory).filter((name) => name.endsWith('.txt')).sort();

t.ok(files.length > 0, 'there are scripts to run');

for (const name of files) {
  void t.test(name, async (t) => {
    const file = path.join(directory, name);
    const segments = parse(name, readFileSync(file, 'utf8'));
    const env = new InteractionEnv();
    const output: string[] = [];
    for (const segment of segments) {
      if (segment.kind === 'text') {
        output.push(segment.text);
        continue;
      }
      const actual = env.run(segment.command);
      output.push(segment.command, '----', actual);
      if (!rewrite) t.equal(actual, segment.expected, `${name}:${segment.line} ${segment.command}`);
    }
    if (rewrite) {
      writeFileSync(file, `${output.join('\n')}\n`);
      t.pass(`rewrote ${name}`);
    }
  });
}
