#!/usr/bin/env node
// The README's test command: build what the tests exec, check types and lint, run every suite,
// and close with one plain "N passed, N failed, N skipped" line that CI can read.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { setup } from './setup.mjs';

setup();

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, CNI_KIT_BUILT: '1' } });
  return r.status ?? 1;
};
const step = (name, cmd, args) => {
  console.log(`\n== ${name}`);
  const code = run(cmd, args);
  if (code !== 0) {
    console.log(`\n${name} failed (exit ${code})`);
    console.log('0 passed, 1 failed');
    process.exit(code);
  }
};

step('build', 'npm', ['run', '--silent', 'build']);
step('typecheck', 'npx', ['tsc', '--noEmit']);
step('lint', 'npx', ['biome', 'check', 'src', 'test', 'examples', 'bench', 'scripts']);

const out = '.vitest-results.json';
rmSync(out, { force: true });
console.log('\n== vitest');
const code = run('npx', [
  'vitest',
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${out}`,
  ...process.argv.slice(2),
]);
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(out, 'utf8'));
  passed = r.numPassedTests;
  failed = r.numFailedTests + (r.numRuntimeErrorTestSuites ?? 0);
  skipped = r.numPendingTests + (r.numTodoTests ?? 0);
} catch {
  failed = Math.max(1, failed);
}
if (code !== 0 && failed === 0) failed = 1;
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(code);
