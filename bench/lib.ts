// Shared helpers for the bench scripts: timing child processes and printing tables.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One measured run of a command: wall time, CPU (user+sys, children included) and peak RSS (GNU time). */
export interface Sample {
  ms: number;
  cpuMs: number;
  rssKiB: number;
}

const timeDir = mkdtempSync(join(tmpdir(), 'ck-bench-'));
process.on('exit', () => rmSync(timeDir, { recursive: true, force: true }));

/** Runs `cmd args` once under /usr/bin/time with the given env and stdin. */
export function measure(cmd: string, args: string[], env: Record<string, string>, input = ''): Sample {
  const out = join(timeDir, 'time');
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', '-o', out, cmd, ...args], { env, input });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
  }
  const [rss, user, sys] = (readFileSync(out, 'utf8').trim().split('\n').at(-1) ?? '').split(' ');
  return { ms, cpuMs: (Number(user) + Number(sys)) * 1000, rssKiB: Number(rss) };
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
