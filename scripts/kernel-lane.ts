// The kernel lane: boots Debian's kernel under qemu once (test/helpers/vm.ts) and runs one vitest
// process inside on the test files below, which need link kinds this machine's kernel may lack
// (ipvlan, vlan, dummy, vrf, bridge VLAN filtering). Outside the VM those files skip such cases with
// a message; inside, the kernel has them all.
//
//   npx tsx scripts/kernel-lane.ts [--json <file>] [--leaks <file>] [file filters...]
//
// --json writes vitest's JSON report there (as the other phases of scripts/test.mjs read it); when
// the lane cannot run (no qemu, no kernel image) it writes a report counting the lane's files as
// skipped and prints one line naming what is missing. --leaks is the leak check's report from inside
// the guest. The exit status is vitest's inside the guest, or 1 when the guest never reported one.
import { readFileSync, writeFileSync } from 'node:fs';
import { findVmTools, runInVm, vmFailure } from '../test/helpers/vm.js';

/**
 * The lane's test files, each with the test names (a regular expression over vitest's full names,
 * describe blocks included) that run in the VM: the cases that need a link kind only the VM's kernel
 * has. Add an entry when a file gains such cases; every describe block of test/kernel says "on the
 * real kernel".
 */
export const KERNEL_LANE: ReadonlyArray<{ file: string; tests: string }> = [
  // Longest first (as measured in the lane), so that neither of vitest's two workers idles at the end.
  {
    file: 'test/integration/conform-ours.test.ts',
    tests: '(ipvlan|vlan) \\+ host-local, where the kernel has',
  },
  { file: 'test/kernel/ipvlan.test.ts', tests: 'on the real kernel' },
  { file: 'test/kernel/ipvlan-whereabouts.test.ts', tests: 'on the real kernel' },
  { file: 'test/kernel/vlan.test.ts', tests: 'on the real kernel' },
  { file: 'test/integration/dummy-tap-conform.test.ts', tests: 'dummy \\+ host-local, where the kernel has' },
  { file: 'test/interop/vrf-chaining.test.ts', tests: 'vrf chained under libcni' },
  { file: 'test/kernel/bridge-vlan.test.ts', tests: 'on the real kernel' },
  { file: 'test/kernel/ipvlan-mode.test.ts', tests: 'on the real kernel' },
  { file: 'test/integration/vrf-plugin.test.ts', tests: 'vrf binary .*enslaves the interface' },
  { file: 'test/integration/plugins-main.test.ts', tests: 'ipvlan and vlan on the real kernel' },
  { file: 'test/integration/dummy-plugin.test.ts', tests: 'dummy binary .*where the kernel has dummy links' },
  {
    file: 'test/integration/netlink.shared.test.ts',
    tests:
      'netlink shared suite .*linux.*(ipvlan links|\\bvlan links|bridge VLANs|dummy link|VRF|macvlan links on a host parent)',
  },
  { file: 'test/kernel/netlink-kinds.test.ts', tests: 'on the real kernel' },
  {
    file: 'test/integration/plugins-bridge.test.ts',
    tests: 'bridge binary .*vlan: the port is an access port',
  },
];

/** Wall-clock limit of the VM, boot included (the watchdog kills qemu after it). */
// 20 minutes: the lane takes some 10 on a loaded 2-core machine (see docs/testing.md).
const TIMEOUT_MS = Number(process.env.CNI_KIT_VM_TIMEOUT_MS ?? 1_200_000);

function args(argv: string[]): { json?: string | undefined; leaks?: string | undefined; filters: string[] } {
  const out: { json?: string | undefined; leaks?: string | undefined; filters: string[] } = { filters: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--json') out.json = argv[++i];
    else if (a === '--leaks') out.leaks = argv[++i];
    else out.filters.push(a);
  }
  return out;
}

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests?: number;
  testResults?: Array<{ assertionResults?: Array<{ fullName: string; status: string }> }>;
}

/**
 * vitest reports the tests the name pattern left out as skipped: drop them, so that the lane's
 * skipped count is only what skipped inside the VM (and says why in the run's output).
 */
function laneOnly(report: Report, pattern: string): Report {
  const re = new RegExp(pattern);
  let pending = 0;
  for (const file of report.testResults ?? []) {
    file.assertionResults = (file.assertionResults ?? []).filter(
      (t) => !['pending', 'skipped'].includes(t.status) || re.test(t.fullName),
    );
    pending += file.assertionResults.filter((t) => ['pending', 'skipped', 'todo'].includes(t.status)).length;
  }
  return { ...report, numPendingTests: pending, numTodoTests: 0 };
}

/** A daemon-mode pass's report, its tests named as such (failures list their full names). */
function inDaemonMode(report: Report): Report {
  for (const file of report.testResults ?? [])
    for (const t of file.assertionResults ?? []) t.fullName = `(daemon mode) ${t.fullName}`;
  return report;
}

/** One report of several passes: counts summed, files listed in order. */
function combine(reports: Report[]): Report {
  return {
    numPassedTests: reports.reduce((n, r) => n + r.numPassedTests, 0),
    numFailedTests: reports.reduce((n, r) => n + r.numFailedTests, 0),
    numPendingTests: reports.reduce((n, r) => n + r.numPendingTests, 0),
    numTodoTests: 0,
    testResults: reports.flatMap((r) => r.testResults ?? []),
  };
}

/** npm test's daemon-mode files (scripts/test.mjs). */
const DAEMON_MATRIX: readonly string[] = JSON.parse(
  readFileSync(new URL('./daemon-matrix.json', import.meta.url), 'utf8'),
);

const EMPTY: Report = { numPassedTests: 0, numFailedTests: 0, numPendingTests: 0, testResults: [] };

async function main(): Promise<number> {
  const opts = args(process.argv.slice(2));
  const lane = opts.filters.length
    ? KERNEL_LANE.filter((e) => opts.filters.some((a) => e.file.includes(a)))
    : KERNEL_LANE;
  if (lane.length === 0) {
    if (opts.json) writeFileSync(opts.json, JSON.stringify(EMPTY));
    return 0;
  }
  const files = lane.map((e) => e.file);
  const pattern = lane.map((e) => `(?:${e.tests})`).join('|');
  const tools = findVmTools();
  if (typeof tools === 'string') {
    console.log(`kernel lane skipped: ${tools}; not run in the VM: ${files.join(' ')}`);
    if (opts.json) writeFileSync(opts.json, JSON.stringify({ ...EMPTY, numPendingTests: files.length }));
    return 0;
  }
  console.log(`kernel lane: ${tools.kernel} under qemu (tcg, 2 vCPUs), ${files.length} file(s)`);
  const share = '/run/cni-kit-vm';
  // The files npm test also runs in daemon mode (the shim per call, forwarding to a daemon) run a
  // second time in the guest that way, so that neither pass keeps a skip for a missing link kind.
  const daemonFiles = files.filter((f) => DAEMON_MATRIX.includes(f));
  const vitest = (list: string[], json: string, isolate = false) =>
    [
      // Not `npx vitest`: npx spends some 45 s resolving the command under emulation.
      'node node_modules/vitest/vitest.mjs run',
      // KERNEL_LANE's order (test/kernel/vitest.lane.config.ts), and one process per worker for all
      // its files: starting a fresh one for each file costs seconds under emulation. The daemon-mode
      // pass isolates its few files: test/helpers/mode.ts stops each file's daemons in an afterAll
      // that a module shared between files would register for the first file only.
      `--config test/kernel/vitest.lane.config.ts${isolate ? '' : ' --no-isolate'}`,
      '--reporter=default',
      `--reporter=json --outputFile.json=${share}/${json}`,
      // Node under emulation is several times slower than on the host.
      '--testTimeout=120000 --hookTimeout=180000',
      `--testNamePattern='${pattern}'`,
      ...list,
    ].join(' ');
  const script = daemonFiles.length
    ? [
        `${vitest(files, 'results.json')}; exec_status=$?`,
        `echo; echo '== kernel lane, plugins in daemon mode'`,
        `CNI_KIT_PLUGIN_MODE=daemon CNI_KIT_LEAK_REPORT=${share}/leaks-daemon.json ${vitest(daemonFiles, 'results-daemon.json', true)}; daemon_status=$?`,
        'if [ "$exec_status" -ne 0 ]; then exit "$exec_status"; fi; exit "$daemon_status"',
      ].join('\n')
    : `exec ${vitest(files, 'results.json')}`;
  const r = await runInVm({
    script,
    cwd: process.cwd(),
    env: {
      CNI_KIT_BUILT: '1',
      CNI_KIT_LANE_ORDER: files.join(','),
      CNI_KIT_LEAK_REPORT: `${share}/leaks.json`,
      ...(process.env.CNI_KIT_LEAK_CHECK ? { CNI_KIT_LEAK_CHECK: process.env.CNI_KIT_LEAK_CHECK } : {}),
    },
    timeoutMs: TIMEOUT_MS,
    onOutput: (s) => process.stdout.write(s),
    collect: ['results.json', 'leaks.json', 'results-daemon.json', 'leaks-daemon.json'],
  });
  const execReport = r.files['results.json'];
  const daemonReport = r.files['results-daemon.json'];
  if (opts.json && execReport) {
    const reports = [laneOnly(JSON.parse(execReport), pattern)];
    if (daemonReport) reports.push(inDaemonMode(laneOnly(JSON.parse(daemonReport), pattern)));
    writeFileSync(opts.json, JSON.stringify(combine(reports)));
  }
  if (opts.leaks) {
    const leaks = ['leaks.json', 'leaks-daemon.json'].flatMap((f) => {
      const t = r.files[f];
      return t ? (JSON.parse(t) as unknown[]) : [];
    });
    if (r.files['leaks.json'] || r.files['leaks-daemon.json'])
      writeFileSync(opts.leaks, JSON.stringify(leaks));
  }
  const missing = daemonFiles.length && !daemonReport ? ' (and no daemon-mode report)' : '';
  const secs = (r.ms / 1000).toFixed(1);
  if (r.status === null) {
    console.log(`\nkernel lane failed: ${vmFailure(r, TIMEOUT_MS)}`);
    return 1;
  }
  if (!execReport || missing) {
    console.log(
      `\nkernel lane failed: vitest exited ${r.status} in the guest (${secs} s) without its report${missing}`,
    );
    return r.status || 1;
  }
  const boot = r.bootMs === undefined ? '' : ` (booted in ${(r.bootMs / 1000).toFixed(1)} s)`;
  console.log(`\nkernel lane: the VM ran for ${secs} s${boot}, vitest exited ${r.status}`);
  return r.status;
}

process.exitCode = await main();
