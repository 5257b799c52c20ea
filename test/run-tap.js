#!/usr/bin/env node
/**
 * Runs `tap` with the given arguments, passes its TAP output through unchanged, and ends with a
 * summary of every failed assertion: the test file, the subtest path and tap's diagnostic block.
 * CI logs keep only the tail of a run, and in 20,000 lines of TAP one `not ok` is invisible; the
 * summary puts it (and where to look) in the last lines.
 *
 * The exit code is tap's (128 + signal if tap was killed); SIGINT, SIGTERM and SIGHUP are passed
 * on to tap's process group, so stopping this script stops the run and the tests' processes. The summary is best effort: a line it cannot
 * make sense of is passed through and skipped, never allowed to change the outcome.
 *
 * Plain JavaScript on purpose: it must run before (and regardless of) the TypeScript build.
 */
'use strict';
const { spawn } = require('node:child_process');
const { constants } = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const tapBin = path.join(__dirname, '..', 'node_modules', '.bin', 'tap');
// tap and everything it starts run in their own process group, so a signal reaches all of them:
// tap itself exits on SIGTERM without stopping the test process it is running.
const child = spawn(tapBin, ['--reporter=tap', ...process.argv.slice(2)], {
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...process.env, TAP: '1' },
  detached: true,
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is gone already
    }
  });
}

const diagnosticLinesMax = 40;
const failures = [];
/** Subtest names by depth (4 spaces of indentation per level). */
const stack = [];
let current = null;
/** Inside a YAML diagnostic block (`---` … `...`): its lines are data, not TAP. */
let yamlIndent = null;

/** The depth of a TAP line, or -1 when its indentation is not whole 4-space levels. */
function depthOf(indent) {
  return /^( {4})*$/.test(indent) ? indent.length / 4 : -1;
}

function onLine(line) {
  if (yamlIndent !== null) {
    if (current !== null) {
      if (current.diagnostic.length < diagnosticLinesMax) current.diagnostic.push(line.slice(current.indent.length));
      else if (current.diagnostic.length === diagnosticLinesMax) current.diagnostic.push('  … (cut; the full block is above)');
    }
    if (line === `${yamlIndent}...`) {
      yamlIndent = null;
      current = null;
    }
    return;
  }
  const yamlStart = /^(\s*)---$/.exec(line);
  if (yamlStart) {
    yamlIndent = yamlStart[1];
    if (current !== null) current.diagnostic.push(line.slice(current.indent.length));
    return;
  }
  current = null;
  const subtest = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (subtest) {
    const depth = depthOf(subtest[1]);
    if (depth < 0) return;
    stack.length = depth;
    stack[depth] = subtest[2];
    return;
  }
  // `not ok N[ - name][ # directive]`; a directive is an unescaped `#` (tap writes `\#` in names).
  const failed = /^(\s*)not ok \d+(?: - (.*?))?(?:\s+(?<!\\)#\s*(.*))?$/.exec(line);
  if (failed) {
    const depth = depthOf(failed[1]);
    const directive = failed[3] ?? '';
    if (depth < 0 || /^(TODO|SKIP)\b/i.test(directive)) return;
    current = { path: [...stack.slice(0, depth), failed[2] ?? '(unnamed)'], indent: failed[1], diagnostic: [] };
    failures.push(current);
  }
}

const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
lines.on('line', (line) => {
  process.stdout.write(`${line}\n`);
  try {
    onLine(line);
  } catch {
    current = null; // the summary may miss this line; the TAP above and the exit code do not
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
  } else if (code !== 0) {
    process.stdout.write(`\n# tap exited with ${code ?? signal}; no failed assertion was recognised: read the TAP above.\n`);
  }
  process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0);
});
