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
import { laneCredit, relFile, skipReasons, totalsLine } from './test-totals.mjs';

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
// The head of a failure message: enough to name the assertion, a property's counterexample and
// the first lines of a diff, since CI shows only the tail of the run's output.
const messageHead = (text) => {
  const lines = String(text ?? '')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .filter((l) => l.trim() && !/^\s+at /.test(l));
  if (lines.length === 0) return '(no message)';
  const head = lines.slice(0, 16).map((l) => (l.length > 240 ? `${l.slice(0, 240)}…` : l));
  if (lines.length > head.length) head.push(`(${lines.length - head.length} more lines)`);
  return head.join('\n    ');
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

/**
 * The plugin integration suites run twice: in exec mode (a Node process per call) with everything
 * else, then in daemon mode (CNI_KIT_PLUGIN_MODE=daemon: the native shim per call, forwarding to a
 * cni-kit daemon in the node's netns; test/helpers/mode.ts). Suites that need the plugin process
 * itself (private mount namespaces, process trees, the conformance kit's own namespaces) run once.
 * The list is scripts/daemon-matrix.json, which the kernel lane reads too.
 */
const DAEMON_MATRIX = JSON.parse(readFileSync(new URL('./daemon-matrix.json', import.meta.url), 'utf8'));

const netns = privateNetns();
let exitCode = 0;
// What failed, repeated after the totals: CI shows the tail of the output, and the reporter's own
// failure list can be thousands of lines above it.
const failures = [];
const args = process.argv.slice(2);
// Arguments narrow the run to some files (as vitest's own filters do); the daemon-mode pass then
// runs only the matrix files among them.
const phases = [
  { name: 'exec mode', env: {}, files: args },
  {
    name: 'daemon mode',
    env: { CNI_KIT_PLUGIN_MODE: 'daemon' },
    files: args.length ? DAEMON_MATRIX.filter((f) => args.some((a) => f.includes(a))) : DAEMON_MATRIX,
  },
  // The kernel lane (scripts/kernel-lane.ts): the cases that need link kinds this kernel may lack
  // (ipvlan, vlan, dummy, vrf, bridge VLAN filtering) again, in Debian's kernel under qemu, and the
  // lane-only files of test/kernel, which no other phase runs. Without qemu or a kernel image it
  // prints what is missing and counts the lane-only files as skipped.
  { name: 'kernel lane', env: {}, files: args, lane: true },
];
/** Each phase's counts, its vitest report and its skips (scripts/skip-reporter.mjs), for the totals. */
const done = [];
for (const phase of phases) {
  if (phase.name === 'daemon mode' && phase.files.length === 0) continue;
  const out = '.vitest-results.json';
  const leaksOut = join(tmpdir(), `cni-kit-leaks-${process.pid}.json`);
  const skipsOut = join(tmpdir(), `cni-kit-skips-${process.pid}.json`);
  for (const f of [out, leaksOut, skipsOut]) rmSync(f, { force: true });
  let code;
  if (phase.lane) {
    console.log(`\n== ${phase.name}: Debian's kernel under qemu`);
    code = run('npx', ['tsx', 'scripts/kernel-lane.ts', '--json', out, '--leaks', leaksOut, ...phase.files]);
  } else {
    console.log(
      `\n== vitest, plugins in ${phase.name}${netns ? ` (in network namespace ${netns.name})` : ''}`,
    );
    const vitest = [
      'vitest',
      'run',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${out}`,
      '--reporter=./scripts/skip-reporter.mjs',
      // Narrowed to the kernel lane's own files, this phase has nothing to run: the lane runs them.
      ...(phase.files.length ? ['--passWithNoTests'] : []),
      ...phase.files,
    ];
    code = run(...(netns ? netns.wrap('npx', vitest) : ['npx', vitest]), {
      CNI_KIT_LEAK_REPORT: leaksOut,
      CNI_KIT_SKIP_REPORT: skipsOut,
      ...phase.env,
    });
  }
  let p = 0;
  let f = 0;
  let s = 0;
  let report;
  try {
    report = JSON.parse(readFileSync(out, 'utf8'));
    p = report.numPassedTests;
    f = report.numFailedTests + (report.numRuntimeErrorTestSuites ?? 0);
    s = report.numPendingTests + (report.numTodoTests ?? 0);
    for (const file of report.testResults ?? []) {
      const name = relFile(file.name, process.cwd()) || '?';
      const failedTests = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
      for (const t of failedTests) {
        failures.push(`${phase.name}: ${name} > ${t.fullName}\n    ${messageHead(t.failureMessages?.[0])}`);
      }
      if (file.status === 'failed' && failedTests.length === 0) {
        failures.push(`${phase.name}: ${name} (the file itself)\n    ${messageHead(file.message)}`);
      }
    }
  } catch {
    f = Math.max(1, f);
  }
  let skips = [];
  try {
    skips = phase.lane ? (report?.skips ?? []) : JSON.parse(readFileSync(skipsOut, 'utf8'));
  } catch {
    // no list: vitest stopped before the end of the run (its failure is counted above)
  }
  for (const f of [out, skipsOut]) rmSync(f, { force: true });
  let leaked = 0;
  try {
    leaked = JSON.parse(readFileSync(leaksOut, 'utf8')).length;
  } catch {
    // no report: the check did not run (CNI_KIT_LEAK_CHECK=0, or vitest stopped before teardown)
  }
  rmSync(leaksOut, { force: true });
  if (leaked > 0) {
    console.log(`\nleak check failed (${phase.name}): ${leaked} thing(s) left behind, listed above`);
    failures.push(`${phase.name}: the leak check (${leaked} thing(s) left behind)`);
    f += 1;
  }
  if (code !== 0 && f === 0) {
    f = 1;
    failures.push(`${phase.name}: vitest exited ${code} with no failed test recorded`);
  }
  // Host skips the kernel lane may still make up for are settled in the totals below.
  console.log(`\n${phase.name}: ${totalsLine({ passed: p, failed: f, skipped: s })}`);
  done.push({ name: phase.name, lane: phase.lane, passed: p, failed: f, skipped: s, report, skips });
  if (code !== 0) exitCode = code;
}

// The totals. A host-side skip whose test the kernel lane ran and passed (same file and full name,
// same plugin mode) counts as run; every other skip stays a skip and is listed with its reason.
const lane = done.find((d) => d.lane);
const laneNote = lane?.report?.notRun ? `kernel lane not run: ${lane.report.notRun}` : undefined;
const credit = [];
for (const d of done) {
  if (d.lane) continue;
  const daemon = d.name === 'daemon mode';
  const c = lane?.report
    ? laneCredit({ host: d.report, lane: lane.report, entries: lane.report.kernelLane, daemon })
    : [];
  d.credited = c.length;
  credit.push(...c.map((x) => ({ ...x, phase: d.name })));
}
console.log('\n== totals');
for (const d of done)
  console.log(
    `${d.name}: ${totalsLine({ ...d, credited: d.credited ?? 0, note: d.lane ? laneNote : undefined })}`,
  );
const sum = (k) => done.reduce((n, d) => n + (d[k] ?? 0), 0);
const reasons = skipReasons(
  done.flatMap((d) => d.skips.map((s) => ({ ...s, phase: d.name }))),
  credit,
);
if (reasons.length) {
  console.log('\nskipped, by reason:');
  for (const [why, n] of reasons) console.log(`  ${String(n).padStart(4)}  ${why}`);
}
if (failures.length) console.log(`\nfailed:\n${failures.map((l) => `  ${l}`).join('\n')}`);
const failed = sum('failed');
console.log(
  `\n${totalsLine({ passed: sum('passed'), failed, skipped: sum('skipped'), credited: sum('credited'), note: laneNote })}`,
);
process.exit(failed > 0 && exitCode === 0 ? 1 : exitCode);
