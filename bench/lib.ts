// Shared helpers for the bench scripts: timing child processes and printing tables.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One measured run of a command: wall time, CPU (user+sys, children included) and peak RSS (GNU time). */
export interface Sample {
  ms: number;
  /** From GNU time: user+sys of the command and its children, in 10 ms steps. */
  cpuMs: number;
  /**
   * The same at µs resolution (getrusage(RUSAGE_CHILDREN) of this process around the run, minus the
   * median cost of `/usr/bin/time … /bin/true`, i.e. the wrapper); undefined when koffi cannot load.
   */
  cpuFineMs: number | undefined;
  rssKiB: number;
}

const timeDir = mkdtempSync(join(tmpdir(), 'ck-bench-'));
process.on('exit', () => rmSync(timeDir, { recursive: true, force: true }));

let rusage: (() => number) | null | undefined;

/**
 * CPU ms (user+sys) of every child this process has reaped so far. Through koffi (getrusage with
 * RUSAGE_CHILDREN, µs resolution; `childCpuPrecise()` is then true); else /proc/self/stat's cutime
 * and cstime, in 10 ms ticks. Loads koffi on first call.
 */
export function childCpuMs(): number {
  if (rusage === undefined) {
    try {
      interface K {
        load(p: null): { func(d: string): (...a: unknown[]) => number };
      }
      const k = createRequire(import.meta.url)('koffi') as K;
      const getrusage = k.load(null).func('int getrusage(int, void *)');
      const ru = Buffer.alloc(144); // struct rusage; ru_utime and ru_stime (timevals) come first
      const us = (o: number) => Number(ru.readBigInt64LE(o)) * 1e6 + Number(ru.readBigInt64LE(o + 8));
      rusage = () => {
        if (getrusage(-1 /* RUSAGE_CHILDREN */, ru) !== 0) throw new Error('getrusage failed');
        return (us(0) + us(16)) / 1000;
      };
    } catch {
      rusage = null;
    }
  }
  if (rusage) return rusage();
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
}

/** Whether `childCpuMs()` has µs resolution (koffi loaded). */
export function childCpuPrecise(): boolean {
  childCpuMs();
  return rusage !== null;
}

let wrapperMs: number | undefined;

/** Median CPU of `/usr/bin/time -f … /bin/true` as seen from here: what `measure` subtracts. */
export function timeWrapperCpuMs(): number {
  if (wrapperMs === undefined) {
    wrapperMs = 0;
    const out = join(timeDir, 'time');
    const xs: number[] = [];
    for (let i = 0; i < 21; i++) {
      const c0 = childCpuMs();
      spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, '/bin/true']);
      xs.push(childCpuMs() - c0);
    }
    wrapperMs = median(xs);
  }
  return wrapperMs;
}

/** Runs `cmd args` once under /usr/bin/time with the given env and stdin. */
export function measure(cmd: string, args: string[], env: Record<string, string>, input = ''): Sample {
  const out = join(timeDir, 'time');
  const fine = childCpuPrecise();
  const wrapper = fine ? timeWrapperCpuMs() : 0;
  const c0 = childCpuMs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, cmd, ...args], { env, input });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpuFineMs = fine ? childCpuMs() - c0 - wrapper : undefined;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  }
  const [rss, user, sys] = (readFileSync(out, 'utf8').trim().split('\n').at(-1) ?? '').split(' ');
  return { ms, cpuMs: (Number(user) + Number(sys)) * 1000, cpuFineMs, rssKiB: Number(rss) };
}

/** The median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Prints rows as an aligned text table. */
export function table(headers: string[], rows: Array<Array<string | number>>): void {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

/** A list of per-iteration counts as one figure when they all agree, else "min–max". */
export function spread(xs: number[]): string {
  if (xs.length === 0) return 'n/a';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? String(lo) : `${lo}–${hi}`;
}

/**
 * Private network namespaces of one bench run (`ip netns add <tag>-<suffix>`). `removeAll()` deletes
 * every namespace whose name starts with `<tag>-`, including any a child process of the bench made
 * under the same tag and could not remove itself (links inside go with their namespace).
 */
export class Namespaces {
  constructor(readonly tag: string) {}

  /** Creates `<tag>-<suffix>` (replacing a stale one) and returns its path. */
  add(suffix: string): string {
    const name = `${this.tag}-${suffix}`;
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
    return `/var/run/netns/${name}`;
  }

  /** Deletes one namespace by path. */
  remove(path: string): void {
    spawnSync('ip', ['netns', 'del', path.split('/').pop()!], { stdio: 'ignore' });
  }

  /** Deletes every namespace of this tag. */
  removeAll(): void {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
    for (const line of list.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      if (name.startsWith(`${this.tag}-`)) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    }
  }
}

/** strace(1), when installed (it is not on CI). */
export const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => existsSync(p));

/** Children a command started, from an strace of its execve calls. */
export interface Children {
  /** Successful execve calls outside the command's own exec chain (nsenter → script → node). */
  execs: number;
  /** Distinct processes that made them (nsenter → sh is one process, two execs). */
  procs: number;
  /** The programs exec'd, in order. */
  programs: string[];
}

/**
 * Runs `cmd args` once under `strace -f -e trace=execve` and counts the successful execve calls made
 * by processes other than the command's own (whose exec chain, e.g. nsenter → the shebang'd plugin →
 * env → node, all happens in the first pid). Undefined when strace is not installed.
 */
export function countChildren(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  input = '',
): Children | undefined {
  if (!STRACE) return undefined;
  const out = join(timeDir, 'strace');
  const r = spawnSync(STRACE, ['-f', '-qq', '-e', 'trace=execve', '-o', out, cmd, ...args], { env, input });
  if (r.status !== 0)
    throw new Error(`strace ${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  let root: string | undefined;
  const pids = new Set<string>();
  const programs: string[] = [];
  const pending = new Map<string, string>();
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m || !m[2]!.includes('execve')) continue;
    const [, pid, rest] = m as unknown as [string, string, string];
    const prog = /execve\("([^"]*)"/.exec(rest)?.[1];
    if (prog && rest.endsWith('<unfinished ...>')) pending.set(pid, prog);
    if (!/= 0$/.test(rest)) continue;
    root ??= pid;
    if (pid === root) continue;
    pids.add(pid);
    programs.push((prog ?? pending.get(pid) ?? '?').split('/').pop()!);
  }
  return { execs: programs.length, procs: pids.size, programs };
}

/** "10 (9 processes)" style text for a Children count; "n/a" without strace. */
export function childrenText(c: Children | undefined): string {
  if (!c) return 'n/a (no strace)';
  return c.procs === c.execs ? String(c.execs) : `${c.execs} (${c.procs} proc)`;
}
