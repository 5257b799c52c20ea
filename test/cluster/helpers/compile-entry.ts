/**
 * Compiles one TypeScript entry point and every project file it imports into plain CommonJS in a
 * temporary directory, so multi-process tests can start (and restart, many times) real processes
 * in ~0.1 s instead of paying a TypeScript loader's start-up in every child. Always compiled from
 * the working tree, so a test never runs a stale dist/. Transpile only (tap's type check and
 * `npm run typecheck` cover types), with the repository's compiler options.
 *
 * The import graph is found by scanning `import … from './x'`, `export … from './x'` and
 * `require('./x')` with relative specifiers; package imports resolve through a node_modules link.
 */
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

export const repositoryRoot = resolve(__dirname, '..', '..', '..');

export interface CompiledEntry {
  /** The compiled entry script to run with `node`. */
  readonly script: string;
  readonly files: number;
  remove(): Promise<void>;
}

const specifierPattern = /(?:\bfrom\s*|\brequire\(\s*|\bimport\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

/** The source file a specifier names; undefined for declaration-only files (type imports). */
async function resolveSource(fromFile: string, specifier: string): Promise<string | undefined> {
  const base = resolve(dirname(fromFile), specifier);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts'), `${base}.d.ts`]) {
    try {
      await readFile(candidate);
      return candidate.endsWith('.d.ts') ? undefined : candidate;
    } catch {
      // try the next form
    }
  }
  throw new Error(`cannot resolve '${specifier}' imported by ${relative(repositoryRoot, fromFile)}`);
}

export async function compileEntry(entry: string): Promise<CompiledEntry> {
  const outDir = await mkdtemp(join(tmpdir(), 'cairn-compiled-'));
  await symlink(join(repositoryRoot, 'node_modules'), join(outDir, 'node_modules'), 'dir');
  const compilerOptions: ts.CompilerOptions = {
    module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false, inlineSourceMap: true,
    resolveJsonModule: true,
  };
  const queue = [resolve(repositoryRoot, entry)];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, 'utf8');
    for (const match of source.matchAll(specifierPattern)) {
      const imported = await resolveSource(file, match[1] as string);
      if (imported !== undefined) queue.push(imported);
    }
    const output = ts.transpileModule(source, { compilerOptions, fileName: file });
    const target = join(outDir, relative(repositoryRoot, file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, output.outputText);
  }
  return {
    script: join(outDir, entry.replace(/\.ts$/, '.js')),
    files: seen.size,
    remove: () => rm(outDir, { recursive: true, force: true }),
  };
}
