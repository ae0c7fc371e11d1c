// npm test's totals (scripts/test-totals.mjs): a host-side skip counts as run only when the kernel
// lane ran and passed that very test (same file, same full name, same plugin mode), and the lines
// say how many. The reports here have vitest's JSON shape (file entries with absolute names,
// assertion results with ancestor titles and full names), taken from real runs of the lane's files.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { laneCredit, skipReasons, totalsLine } from '../../scripts/test-totals.mjs';

const CWD = '/checkout';

interface Case {
  describe: string;
  title: string;
  status: 'passed' | 'failed' | 'skipped' | 'pending' | 'todo';
}

/** A vitest JSON report: one entry per file, as `--reporter=json` writes it. */
function report(files: Record<string, Case[]>, fullNamePrefix = '') {
  const testResults = Object.entries(files).map(([file, cases]) => ({
    assertionResults: cases.map((c) => ({
      ancestorTitles: [c.describe],
      fullName: `${fullNamePrefix}${c.describe} ${c.title}`,
      status: c.status,
      title: c.title,
      duration: c.status === 'passed' ? 222.9 : 0,
      failureMessages: c.status === 'failed' ? ['AssertionError: expected 1 to be +0'] : [],
      meta: {},
      tags: [],
    })),
    startTime: 1795808779000,
    endTime: 1795808959000,
    status: cases.some((c) => c.status === 'failed') ? 'failed' : 'passed',
    message: '',
    name: `${CWD}/${file}`,
  }));
  const count = (s: string[]) =>
    testResults.flatMap((f) => f.assertionResults).filter((t) => s.includes(t.status)).length;
  return {
    numTotalTestSuites: testResults.length,
    numPassedTests: count(['passed']),
    numFailedTests: count(['failed']),
    numPendingTests: count(['skipped', 'pending']),
    numTodoTests: count(['todo']),
    success: count(['failed']) === 0,
    testResults,
  };
}

const SHARED = 'test/integration/netlink.shared.test.ts';
const DUMMY = 'test/integration/dummy-plugin.test.ts';
const ENTRIES = [
  {
    file: SHARED,
    tests:
      'netlink shared suite .*linux.*(ipvlan links|\\bvlan links|bridge VLANs|dummy link|VRF|macvlan links on a host parent)',
  },
  { file: DUMMY, tests: 'dummy binary .*where the kernel has dummy links' },
];
const NATIVE = "netlink shared suite ('linux native')";
const VLANS = 'configures bridge VLANs the way the bridge plugin does';
const IPVLAN = 'creates ipvlan links on a macvlan device, and no macvlan on an ipvlan one';
const DUMMY_D = 'dummy binary';
const DUMMY_T = 'ADD creates the link, where the kernel has dummy links';

describe('kernel lane credit for host skips', () => {
  it('takes off a host skip the lane passed, in the same file under the same full name', () => {
    const host = report({
      [SHARED]: [
        { describe: NATIVE, title: VLANS, status: 'skipped' },
        { describe: NATIVE, title: IPVLAN, status: 'skipped' },
        { describe: NATIVE, title: 'lists links', status: 'passed' },
      ],
    });
    const lane = report({ [SHARED]: [{ describe: NATIVE, title: VLANS, status: 'passed' }] });
    const credited = laneCredit({ host, lane, entries: ENTRIES, cwd: CWD });
    // IPVLAN is a lane case too, but this lane run did not pass it: it stays a skip.
    expect(credited).toEqual([{ file: SHARED, fullName: `${NATIVE} ${VLANS}` }]);
  });

  it('keeps a skip whose lane run failed or skipped, or that passed in another file or mode', () => {
    const host = report({ [SHARED]: [{ describe: NATIVE, title: VLANS, status: 'skipped' }] });
    for (const lane of [
      report({ [SHARED]: [{ describe: NATIVE, title: VLANS, status: 'failed' }] }),
      report({ [SHARED]: [{ describe: NATIVE, title: VLANS, status: 'skipped' }] }),
      report({ [DUMMY]: [{ describe: NATIVE, title: VLANS, status: 'passed' }] }),
      report({ [SHARED]: [{ describe: NATIVE, title: VLANS, status: 'passed' }] }, '(daemon mode) '),
      report({ [SHARED]: [{ describe: `${NATIVE} x`, title: VLANS, status: 'passed' }] }),
    ])
      expect(laneCredit({ host, lane, entries: ENTRIES, cwd: CWD })).toEqual([]);
  });

  it("keeps a skip outside its file's lane pattern even when a test of that name passed in the lane", () => {
    const memory = "netlink shared suite ('memory')";
    const host = report({ [SHARED]: [{ describe: memory, title: VLANS, status: 'skipped' }] });
    const lane = report({ [SHARED]: [{ describe: memory, title: VLANS, status: 'passed' }] });
    expect(laneCredit({ host, lane, entries: ENTRIES, cwd: CWD })).toEqual([]);
    expect(laneCredit({ host, lane, entries: [], cwd: CWD })).toEqual([]);
  });

  it('matches a daemon-mode skip only with the lane\'s "(daemon mode) " pass of it', () => {
    const host = report({ [DUMMY]: [{ describe: DUMMY_D, title: DUMMY_T, status: 'skipped' }] });
    const execPass = report({ [DUMMY]: [{ describe: DUMMY_D, title: DUMMY_T, status: 'passed' }] });
    const daemonPass = report(
      { [DUMMY]: [{ describe: DUMMY_D, title: DUMMY_T, status: 'passed' }] },
      '(daemon mode) ',
    );
    const want = [{ file: DUMMY, fullName: `${DUMMY_D} ${DUMMY_T}` }];
    expect(laneCredit({ host, lane: execPass, entries: ENTRIES, daemon: true, cwd: CWD })).toEqual([]);
    expect(laneCredit({ host, lane: daemonPass, entries: ENTRIES, daemon: true, cwd: CWD })).toEqual(want);
    expect(laneCredit({ host, lane: daemonPass, entries: ENTRIES, cwd: CWD })).toEqual([]);
    expect(laneCredit({ host, lane: execPass, entries: ENTRIES, cwd: CWD })).toEqual(want);
  });

  it('credits nothing when the lane did not run (its report has no tests)', () => {
    const host = report({ [DUMMY]: [{ describe: DUMMY_D, title: DUMMY_T, status: 'skipped' }] });
    const lane = {
      numPassedTests: 0,
      numFailedTests: 0,
      numPendingTests: 4,
      testResults: [],
      kernelLane: ENTRIES,
      notRun: 'missing qemu-system-x86_64 (Debian package qemu-system-x86)',
    };
    expect(laneCredit({ host, lane, entries: lane.kernelLane, cwd: CWD })).toEqual([]);
    expect(laneCredit({ host, lane: undefined, entries: ENTRIES, cwd: CWD })).toEqual([]);
  });

  it('property: exactly the host skips whose file and full name passed in the lane, in their pattern', () => {
    // Few names from a small alphabet, so that names collide, prefix one another and cross files.
    const name = fc.constantFrom('a', 'a b', 'b', 'kernel a', 'kernel a b');
    const file = fc.constantFrom('x.test.ts', 'y.test.ts', 'z.test.ts');
    const status = fc.constantFrom('passed', 'failed', 'skipped', 'pending', 'todo') as fc.Arbitrary<
      Case['status']
    >;
    const cases = fc.array(fc.record({ file, title: name, status }), { maxLength: 12 });
    fc.assert(
      fc.property(cases, cases, fc.boolean(), (hostCases, laneCases, daemon) => {
        const group = (cs: Array<{ file: string; title: string; status: Case['status'] }>) => {
          const out: Record<string, Case[]> = {};
          for (const c of cs) {
            const list = out[c.file] ?? [];
            list.push({ describe: 'suite', ...c });
            out[c.file] = list;
          }
          return out;
        };
        const entries = [
          { file: 'x.test.ts', tests: '^suite kernel' },
          { file: 'y.test.ts', tests: 'a b$' },
        ];
        const host = report(group(hostCases));
        const lane = report(group(laneCases), daemon ? '(daemon mode) ' : '');
        const got = laneCredit({ host, lane, entries, daemon, cwd: CWD });
        const want = hostCases.filter(
          (h) =>
            (h.status === 'skipped' || h.status === 'pending') &&
            entries.some((e) => e.file === h.file && new RegExp(e.tests).test(`suite ${h.title}`)) &&
            laneCases.some((l) => l.file === h.file && l.title === h.title && l.status === 'passed'),
        );
        expect(got).toEqual(want.map((h) => ({ file: h.file, fullName: `suite ${h.title}` })));
      }),
      { numRuns: 300 },
    );
  });
});

describe('totals lines', () => {
  it('a phase the lane made up for says how many of its skips ran there', () => {
    expect(totalsLine({ passed: 1374, failed: 0, skipped: 50, credited: 43 })).toBe(
      '1374 passed, 0 failed, 7 skipped (43 more ran in the kernel lane)',
    );
    expect(totalsLine({ passed: 60, failed: 1, skipped: 0 })).toBe('60 passed, 1 failed, 0 skipped');
  });

  it('a lane that did not run names what is missing, and the skips stay', () => {
    const note = 'kernel lane not run: missing qemu-system-x86_64 (Debian package qemu-system-x86)';
    expect(totalsLine({ passed: 1596, failed: 0, skipped: 79, note })).toBe(
      `1596 passed, 0 failed, 79 skipped (${note})`,
    );
  });

  it('counts the skips left by reason, most first; a skip without one says so', () => {
    const skips = [
      {
        phase: 'exec mode',
        file: SHARED,
        fullName: `${NATIVE} ${VLANS}`,
        note: 'kernel has no bridge VLAN filtering',
      },
      {
        phase: 'exec mode',
        file: SHARED,
        fullName: `${NATIVE} ${IPVLAN}`,
        note: 'kernel has no ipvlan link type',
      },
      { phase: 'daemon mode', file: DUMMY, fullName: 'a', note: 'needs root' },
      { phase: 'daemon mode', file: DUMMY, fullName: 'b', note: 'needs root' },
      { phase: 'exec mode', file: DUMMY, fullName: 'c' },
      { phase: 'exec mode', file: DUMMY, fullName: 'd', todo: true },
    ];
    const credited = [{ phase: 'exec mode', file: SHARED, fullName: `${NATIVE} ${VLANS}` }];
    expect(skipReasons(skips, credited)).toEqual([
      ['needs root', 2],
      ['(no reason given)', 1],
      ['(todo)', 1],
      ['kernel has no ipvlan link type', 1],
    ]);
  });
});
