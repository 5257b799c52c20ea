// Goal: the architecture's import rules and style rules hold, as code (DESIGN.md "Import
// direction", STYLE.md lesson 15). Method: read every source file under src/ and check its
// imports and a few banned patterns; a violation names the file and the offending import.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const root = join(__dirname, '..');
const srcRoot = join(root, 'src');

function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) return name === 'generated' ? [] : sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

const files = sourceFiles(srcRoot).map((path) => {
  const text = readFileSync(path, 'utf8');
  const imports = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/g), ...text.matchAll(/require\('([^']+)'\)/g)]
    .map((match) => match[1] ?? '');
  const folder = relative(srcRoot, path).split(sep)[0] ?? '';
  return { path: relative(root, path), folder, text, imports };
});

/** The src/ folder an import lands in ('' for a package or node:*). */
function targetFolder(file: { path: string }, specifier: string): string {
  if (!specifier.startsWith('.')) return '';
  const resolved = relative(srcRoot, join(root, file.path, '..', specifier));
  return resolved.startsWith('..') ? '..' : (resolved.split(sep)[0] ?? '').replace(/\.ts$/, '');
}

t.test('the pure cores (raft, meta, util, errors, limits) import nothing from node:* or packages', async (t) => {
  const pure = new Set(['raft', 'meta', 'util', 'errors', 'limits.ts', 'check']);
  for (const file of files.filter((f) => pure.has(f.folder))) {
    if (file.folder === 'check' && /history-file|cli/.test(file.path)) continue; // the checker's file and CLI edges
    for (const specifier of file.imports) {
      t.ok(specifier.startsWith('.'), `${file.path} imports '${specifier}'`);
    }
  }
});

t.test('raft is a standalone library: it imports only util/assert and util/random from the project', async (t) => {
  for (const file of files.filter((f) => f.folder === 'raft')) {
    for (const specifier of file.imports) {
      const folder = targetFolder(file, specifier);
      if (folder === 'raft') continue;
      t.ok(/util\/(assert|random)$/.test(specifier), `${file.path} imports '${specifier}'`);
    }
  }
});

t.test('nbd knows only block (plus util, errors, limits and observe types)', async (t) => {
  const allowed = new Set(['nbd', 'block', 'util', 'errors', 'limits', 'observe', '']);
  for (const file of files.filter((f) => f.folder === 'nbd')) {
    for (const specifier of file.imports) t.ok(allowed.has(targetFolder(file, specifier)), `${file.path} imports '${specifier}'`);
  }
});

t.test('cli and csi reach the daemon only through the api client', async (t) => {
  const forbidden = new Set(['raft', 'meta', 'store', 'control', 'extent', 'daemon', 'nbd', 'transport', 'replication']);
  for (const file of files.filter((f) => f.folder === 'cli' || f.folder === 'csi')) {
    for (const specifier of file.imports) t.notOk(forbidden.has(targetFolder(file, specifier)), `${file.path} imports '${specifier}'`);
  }
});

t.test('nothing in production imports the simulator', async (t) => {
  for (const file of files.filter((f) => f.folder !== 'sim')) {
    for (const specifier of file.imports) t.not(targetFolder(file, specifier), 'sim', `${file.path} imports '${specifier}'`);
  }
});

t.test('no Math.random in the deterministic cores and no console.log anywhere in src', async (t) => {
  for (const file of files) {
    if (['raft', 'meta', 'sim', 'check'].includes(file.folder)) t.notMatch(file.text, /Math\.random\(/, `${file.path} uses Math.random`);
    t.notMatch(file.text, /console\.log\(/, `${file.path} uses console.log`);
  }
});

t.test('every source file opens with a module comment saying what it owns', async (t) => {
  for (const file of files) {
    t.match(file.text.trimStart(), /^(\/\*\*|\/\/|\/\*)/, `${file.path} has no opening comment`);
  }
});
