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
import { KERNEL_LANE, type LaneEntry } from '../test/kernel/lane-files.js';

/** The lane's list: test/kernel/lane-files.ts (vitest.config.ts reads it too). */
export { KERNEL_LANE };

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
  testResults?: Array<{ name?: string; assertionResults?: Array<{ fullName: string; status: string }> }>;
}

/** A skipped test as scripts/skip-reporter.mjs lists it. */
interface Skip {
  file: string;
  fullName: string;
  note?: string;
  todo?: boolean;
}

/** What --json holds: vitest's JSON report of the lane, and what scripts/test.mjs needs besides. */
interface LaneReport extends Report {
  /** The entries of KERNEL_LANE this run covered (scripts/test.mjs matches host skips against them). */
  kernelLane: readonly LaneEntry[];
  /** The tests that skipped in the VM, with their reasons. */
  skips: Skip[];
  /** Why the lane did not run (what is missing), when it did not. */
  notRun?: string;
}

const rel = (name: string | undefined): string => (name ?? '').replace(`${process.cwd()}/`, '');

/** Whether a test is one of the lane's: its file's KERNEL_LANE pattern matches its full name. */
function inLane(lane: readonly LaneEntry[], file: string, fullName: string): boolean {
  return lane.some((e) => e.file === file && new RegExp(e.tests).test(fullName));
}

/**
 * vitest reports the tests the name pattern left out as skipped: drop them, so that the lane's
 * skipped count is only what skipped inside the VM (and says why in the run's output). The pattern
 * vitest ran with is every entry's at once; a test counts only under its own file's.
 */
function laneOnly(report: Report, lane: readonly LaneEntry[]): Report {
  let pending = 0;
  for (const file of report.testResults ?? []) {
    const name = rel(file.name);
    file.assertionResults = (file.assertionResults ?? []).filter(
      (t) => !['pending', 'skipped'].includes(t.status) || inLane(lane, name, t.fullName),
    );
    pending += file.assertionResults.filter((t) => ['pending', 'skipped', 'todo'].includes(t.status)).length;
  }
  return { ...report, numPendingTests: pending, numTodoTests: 0 };
}

/** The skip reporter's list, with the same cut as laneOnly(). */
function laneSkips(text: string | undefined, lane: readonly LaneEntry[], daemon: boolean): Skip[] {
  if (!text) return [];
  return (JSON.parse(text) as Skip[])
    .filter((s) => inLane(lane, s.file, s.fullName))
    .map((s) => (daemon ? { ...s, fullName: `(daemon mode) ${s.fullName}` } : s));
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
  const write = (report: LaneReport): void => {
    if (opts.json) writeFileSync(opts.json, JSON.stringify(report));
  };
  if (lane.length === 0) {
    write({ ...EMPTY, kernelLane: [], skips: [] });
    return 0;
  }
  const files = lane.map((e) => e.file);
  const pattern = lane.map((e) => `(?:${e.tests})`).join('|');
  const tools = findVmTools();
  if (typeof tools === 'string') {
    console.log(`kernel lane skipped: ${tools}; not run in the VM: ${files.join(' ')}`);
    // The lane-only files ran nowhere: each counts as one skip. The other files' lane cases already
    // skipped on the host and stay counted there.
    const laneOnlyFiles = lane.filter((e) => e.laneOnly).map((e) => e.file);
    write({
      ...EMPTY,
      numPendingTests: laneOnlyFiles.length,
      kernelLane: lane,
      skips: laneOnlyFiles.map((file) => ({ file, fullName: '(the whole file)', note: tools })),
      notRun: tools,
    });
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
      // The skipped tests with their reasons (CNI_KIT_SKIP_REPORT, set per pass below).
      '--reporter=./scripts/skip-reporter.mjs',
      // Node under emulation is several times slower than on the host.
      '--testTimeout=120000 --hookTimeout=180000',
      `--testNamePattern='${pattern}'`,
      ...list,
    ].join(' ');
  // How busy the guest's two vCPUs were (from /proc/stat; idle and iowait count as not busy): the
  // lane is CPU-bound when this is near 100 %, and waits on something when it is not.
  const cpu = [
    "cpu_now() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }",
    'cpu_start=$(cpu_now)',
    'cpu_report() { set -- $cpu_start $(cpu_now); echo; echo "kernel lane: guest CPU busy $(( 100 * ($3 - $1) / ($3 - $1 + $4 - $2 + 1) ))% of the time"; }',
  ];
  const script = [
    ...cpu,
    `CNI_KIT_SKIP_REPORT=${share}/skips.json ${vitest(files, 'results.json')}; exec_status=$?`,
    ...(daemonFiles.length
      ? [
          `echo; echo '== kernel lane, plugins in daemon mode'`,
          `CNI_KIT_PLUGIN_MODE=daemon CNI_KIT_SKIP_REPORT=${share}/skips-daemon.json CNI_KIT_LEAK_REPORT=${share}/leaks-daemon.json ${vitest(daemonFiles, 'results-daemon.json', true)}; daemon_status=$?`,
        ]
      : ['daemon_status=0']),
    'cpu_report',
    'if [ "$exec_status" -ne 0 ]; then exit "$exec_status"; fi; exit "$daemon_status"',
  ].join('\n');
  const r = await runInVm({
    script,
    cwd: process.cwd(),
    env: {
      // A module cache in the guest's memory (test/kernel/vitest.lane.config.ts): the daemon-mode
      // pass reuses what the first pass transformed instead of paying for it again.
      CNI_KIT_VITEST_CACHE: '/tmp/cni-kit-vitest-cache',
      CNI_KIT_BUILT: '1',
      CNI_KIT_LANE_ORDER: files.join(','),
      CNI_KIT_LEAK_REPORT: `${share}/leaks.json`,
      ...(process.env.CNI_KIT_LEAK_CHECK ? { CNI_KIT_LEAK_CHECK: process.env.CNI_KIT_LEAK_CHECK } : {}),
    },
    timeoutMs: TIMEOUT_MS,
    onOutput: (s) => process.stdout.write(s),
    collect: [
      'results.json',
      'leaks.json',
      'results-daemon.json',
      'leaks-daemon.json',
      'skips.json',
      'skips-daemon.json',
    ],
  });
  const execReport = r.files['results.json'];
  const daemonReport = r.files['results-daemon.json'];
  if (execReport) {
    const reports = [laneOnly(JSON.parse(execReport), lane)];
    if (daemonReport) reports.push(inDaemonMode(laneOnly(JSON.parse(daemonReport), lane)));
    const skips = [
      ...laneSkips(r.files['skips.json'], lane, false),
      ...laneSkips(r.files['skips-daemon.json'], lane, true),
    ];
    write({ ...combine(reports), kernelLane: lane, skips });
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
