// Types of scripts/test-totals.mjs (plain JavaScript, as scripts/test.mjs runs under node alone).

export interface TestRef {
  file: string;
  fullName: string;
}

export interface LaneEntry {
  file: string;
  tests: string;
}

/** A vitest JSON report, as far as the totals read it. */
export interface JsonReport {
  testResults?: ReadonlyArray<{
    name?: string;
    assertionResults?: ReadonlyArray<{ fullName: string; status: string }>;
  }>;
}

export const DAEMON_PREFIX: string;
export function relFile(name: string | undefined, cwd: string): string;
export function laneCredit(opts: {
  host: JsonReport | undefined;
  lane: JsonReport | undefined;
  entries: readonly LaneEntry[] | undefined;
  daemon?: boolean;
  cwd?: string;
}): TestRef[];
export function totalsLine(counts: {
  passed: number;
  failed: number;
  skipped: number;
  credited?: number;
  note?: string | undefined;
}): string;
export function skipReasons(
  skips: ReadonlyArray<TestRef & { phase: string; note?: string; todo?: boolean }>,
  credited: ReadonlyArray<TestRef & { phase: string }>,
): Array<[string, number]>;
