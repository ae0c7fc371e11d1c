// Shared by the conform test files (conform-kit, conform-ours, conform-go): the suite's work dir,
// a conform() shorthand with per-file names, report accessors, and the fixtures. Each file calls
// useConformSuite() once; its afterAll removes whatever a failed or timed-out run left.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, type TestContext } from 'vitest';
import {
  type ConformOptions,
  type ConformReport,
  cleanupConformNamespaces,
  runConformance,
} from '../../src/conform/index.js';
import { BIN_DIR } from './plugin.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const FIXTURES = join(root, 'test/fixtures/conform');
export const PREV_RESULT = JSON.parse(readFileSync(join(FIXTURES, 'prev-result.json'), 'utf8')) as Record<
  string,
  unknown
>;
export const GO = '/usr/lib/cni';
export const MACVLAN_MASTER = 'ip link add eth0 type bridge && ip link set eth0 up';
export const tag = `ckct${process.pid % 100000}`;
let work: string;
let seq = 0;
export const children: ChildProcess[] = [];
export const extraNetns: string[] = [];

export function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'iproute2 with netns support not installed';
  if (spawnSync('nsenter', ['--version']).status !== 0) return 'nsenter not installed';
  if (spawnSync('iptables-save').status !== 0) return 'iptables not usable';
  return undefined;
}

export function need(ctx: TestContext, ...bins: string[]): void {
  const why = missing();
  if (why) ctx.skip(why);
  for (const b of bins) {
    try {
      statSync(b);
    } catch {
      ctx.skip(`${b} not installed`);
    }
  }
}

/** Registers the suite's set-up and clean-up: a work dir, and afterwards every namespace left. */
export function useConformSuite(): void {
  const sleepWas = process.env.CK_FIXTURE_SLEEP;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), `${tag}-`));
    // Plugins inherit the environment, in-process runs and CLI children alike.
    process.env.CK_FIXTURE_SLEEP = SLEEP;
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await cleanupConformNamespaces();
    for (const n of extraNetns) spawnSync('ip', ['netns', 'del', n]);
    if (work) rmSync(work, { recursive: true, force: true });
    if (sleepWas === undefined) delete process.env.CK_FIXTURE_SLEEP;
    else process.env.CK_FIXTURE_SLEEP = sleepWas;
  });
}

/** The next number of this file's runs (names and subnets stay apart). */
export const nextSeq = (): number => ++seq;
/** This file's work dir (set in beforeAll). */
export const workDir = (): string => work;

/** A fresh directory under the suite's work dir. */
export function freshDir(name: string): string {
  const d = join(work, `${name}-${++seq}`);
  mkdirSync(d, { recursive: true });
  return d;
}

export const hostLocal = (subnet: string) => ({ type: 'host-local', subnet, dataDir: freshDir('ipam') });

export function conform(
  plugin: string,
  config: Record<string, unknown>,
  opts: Partial<ConformOptions> = {},
): Promise<ConformReport> {
  return runConformance({
    plugin,
    config: { cniVersion: '1.0.0', name: `${tag}n${++seq}`, ...config },
    concurrency: 3,
    ...opts,
  });
}

export const failures = (r: ConformReport) =>
  r.checks.filter((c) => c.status === 'fail').map((c) => `${c.check}@${c.version ?? '-'}: ${c.detail}`);
export const failedIds = (r: ConformReport) =>
  [...new Set(r.checks.filter((c) => c.status === 'fail').map((c) => c.check))].sort();
export const passedIds = (r: ConformReport) =>
  r.checks.filter((c) => c.status === 'pass').map((c) => `${c.check}@${c.version ?? '-'}`);
export const detailsOf = (r: ConformReport, check: string) =>
  r.checks.filter((c) => c.check === check && c.status === 'fail').map((c) => c.detail);

export function expectAllPass(r: ConformReport, versions: string[]): void {
  expect(failures(r)).toEqual([]);
  expect(r.checks.filter((c) => c.check === 'kit')).toEqual([]);
  expect(r.ok).toBe(true);
  expect(r.versions).toEqual(versions);
  for (const v of versions) {
    for (const check of ['add', 'del', 'leftovers', 'del-twice', 'del-netns-gone', 'concurrent-add']) {
      expect(passedIds(r)).toContain(`${check}@${v}`);
    }
  }
}

/** Files under a dir, for checking a data dir against the allowlist. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => d.name);
}

export const ours = (type: string) => join(BIN_DIR, type);
export const fixture = (mode?: string) =>
  mode ? join(FIXTURES, 'broken', mode) : join(FIXTURES, 'plugin.mjs');
export const fixtureConfig = () => ({
  type: 'ck-fixture',
  ipam: { type: 'ck-fixture-ipam', subnet: '10.90.0.0/24', dataDir: freshDir('fixture') },
});

/** The namespaces of one run (its node netns name, and `<name>-<n>`) still in /run/netns. */
export const netnsOfRun = (node: string) =>
  readdirSync('/run/netns').filter((n) => n === node || n.startsWith(`${node}-`));
/** hang-on-add sleeps this long: unique to this process, so other runs' sleeps are not ours. */
export const SLEEP = `61.${process.pid}`;
export const sleepPid = () =>
  spawnSync('pgrep', ['-f', `^sleep ${SLEEP}$`], { encoding: 'utf8' }).stdout.trim();
export const sleeping = () => sleepPid() !== '';

/** The CNI_NETNS of the plugin process that started the hanging sleep. */
export function hangingNetns(): string {
  const pid = sleepPid().split('\n')[0]!;
  const ppid = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]!;
  const env = readFileSync(`/proc/${ppid}/environ`, 'utf8').split('\0');
  return env.find((e) => e.startsWith('CNI_NETNS='))?.slice('CNI_NETNS=/run/netns/'.length) ?? '';
}

export async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function cliChild(args: string[], netns?: string): ChildProcess {
  const cmd = ['node', '--import', 'tsx', join(root, 'src/cli/bin.ts'), 'conform', ...args];
  const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  const child = spawn(file, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return child;
}

export function collect(
  child: ChildProcess,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
