#!/usr/bin/env node
// The README's test command: build what the tests exec, check types and lint, run every suite,
// and close with one plain "N passed, N failed, N skipped" line that CI can read. The vitest run
// ends with the leak check of test/helpers/global-setup.ts: anything the tests left behind
// (namespaces, links, rules, mounts, temp files) fails it, and counts as one failure here.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup } from './setup.mjs';

setup();

const run = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, CNI_KIT_BUILT: '1', ...env } });
  return r.status ?? 1;
};

/**
 * The suites run in a network namespace of their own (as root, where iproute2 and nsenter exist):
 * what a test creates on "the host" side (bridges, host veths, masquerade rules) lands there, never
 * on the machine's interfaces, and goes with the namespace at the end. Only loopback is up in it;
 * the tests need no other network (npm installs in them use the npm cache). CNI_KIT_TEST_NETNS=0
 * runs them in the caller's namespace instead.
 */
function privateNetns() {
  if (process.env.CNI_KIT_TEST_NETNS === '0' || process.getuid?.() !== 0) return undefined;
  const has = (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;
  if (!has('ip') || !has('nsenter')) return undefined;
  const name = `cni-kit-test-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', name], { stdio: 'inherit' }).status !== 0) return undefined;
  spawnSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { stdio: 'inherit' });
  const remove = () => spawnSync('ip', ['netns', 'del', name]);
  process.once('exit', remove);
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  return { name, wrap: (cmd, args) => ['nsenter', [`--net=/run/netns/${name}`, cmd, ...args]] };
}
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
const leaksOut = join(tmpdir(), `cni-kit-leaks-${process.pid}.json`);
rmSync(out, { force: true });
rmSync(leaksOut, { force: true });
const netns = privateNetns();
console.log(`\n== vitest${netns ? ` (in network namespace ${netns.name})` : ''}`);
const vitest = [
  'vitest',
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${out}`,
  ...process.argv.slice(2),
];
const code = run(...(netns ? netns.wrap('npx', vitest) : ['npx', vitest]), { CNI_KIT_LEAK_REPORT: leaksOut });
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
let leaked = 0;
try {
  leaked = JSON.parse(readFileSync(leaksOut, 'utf8')).length;
} catch {
  // no report: the check did not run (CNI_KIT_LEAK_CHECK=0, or vitest stopped before teardown)
}
rmSync(leaksOut, { force: true });
if (leaked > 0) {
  console.log(`\nleak check failed: ${leaked} thing(s) left behind, listed above`);
  failed += 1;
}
if (code !== 0 && failed === 0) failed = 1;
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(code);
