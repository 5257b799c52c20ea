#!/usr/bin/env node
/**
 * Runs `tap` with the given arguments, passes its TAP output through unchanged, and ends with a
 * summary of every failed assertion: the test file, the subtest path and tap's diagnostic block.
 * CI logs keep only the tail of a run, and in 20,000 lines of TAP one `not ok` is invisible; the
 * summary puts it (and where to look) in the last lines. The exit code is tap's.
 *
 * Plain JavaScript on purpose: it must run before (and regardless of) the TypeScript build.
 */
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const tapBin = path.join(__dirname, '..', 'node_modules', '.bin', 'tap');
const child = spawn(tapBin, ['--reporter=tap', ...process.argv.slice(2)], {
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...process.env, TAP: '1' },
});

const failures = [];
/** Subtest names by indentation depth (4 spaces per level). */
const stack = [];
let current = null;

const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
lines.on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const subtest = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (subtest) {
    const depth = subtest[1].length / 4;
    stack.length = depth;
    stack[depth] = subtest[2];
    current = null;
    return;
  }
  const failed = /^(\s*)not ok \d+ - (.*?)(\s+# time=.*)?$/.exec(line);
  if (failed && !/# (TODO|SKIP)/i.test(line)) {
    const depth = failed[1].length / 4;
    current = { path: [...stack.slice(0, depth), failed[2]], indent: failed[1], diagnostic: [] };
    failures.push(current);
    return;
  }
  if (current !== null) {
    // The YAML block follows a failure at its indentation + 2, between `---` and `...`.
    if (line.startsWith(`${current.indent}  `)) {
      if (current.diagnostic.length < 40) current.diagnostic.push(line.slice(current.indent.length));
    } else {
      current = null;
    }
  }
});

child.on('close', (code, signal) => {
  // A parent reports `not ok` when a child failed: keep only the deepest failures.
  const leaves = failures.filter((failure) => !failures.some((other) => other !== failure &&
    other.path.length > failure.path.length && failure.path.every((name, i) => other.path[i] === name)));
  if (leaves.length > 0) {
    process.stdout.write(`\n# ${leaves.length} failed assertion(s):\n`);
    for (const failure of leaves) {
      process.stdout.write(`#\n# not ok: ${failure.path.join(' > ')}\n`);
      for (const line of failure.diagnostic) process.stdout.write(`#   ${line}\n`);
    }
  }
  process.exitCode = code ?? (signal ? 1 : 0);
});
