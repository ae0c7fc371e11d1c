// multus ADD makes its caches durable before it answers, and does so in one flush: the delegate
// cache and every delegate's result cache are renamed into place first, then each file and each
// directory is fsynced once, all before the result reaches stdout. Watched from outside with
// strace on the plugin binary (thin mode, two Go loopback delegates, a pod netns of its own).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { afterAll, beforeAll, describe, expect, it, type TestContext, vi } from 'vitest';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { BIN_DIR } from '../helpers/plugin.js';

const GO = '/usr/lib/cni';
const STRACE = ['/usr/bin/strace', '/bin/strace'].find((p) => existsSync(p));
const tag = `mdur${process.pid % 100000}`;
const ns = `${tag}-pod`;
let work = '';

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for a network namespace';
  if (!STRACE) return 'needs strace';
  if (!existsSync(join(GO, 'loopback'))) return 'needs the Go loopback plugin';
  if (!existsSync(join(BIN_DIR, 'multus'))) return 'needs a build (dist/bin/multus)';
  return undefined;
}
const need = (ctx: TestContext) => {
  const why = missing();
  if (why) ctx.skip(why);
};

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  if (!missing()) {
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
  }
});
afterAll(() => {
  spawnSync('ip', ['netns', 'del', ns]);
  if (work) rmSync(work, { recursive: true, force: true });
});

/** One traced syscall, completed. */
interface Call {
  /** Line of the trace where it completed. */
  at: number;
  name: string;
  /** For fsync: the path of its fd; for rename: the new path; for write: the fd. */
  target: string;
  /** The thread (the first line's is the plugin's main thread). */
  tid: string;
}

/** The completed rename, fsync and stdout-write calls of an `strace -f -y` log, in completion order. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<string, { name: string; target: string; tid: string }>();
  const targetOf = (name: string, args: string) => {
    if (name.startsWith('rename')) {
      const paths = [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] as string);
      return paths[paths.length - 1] ?? '';
    }
    if (name === 'fsync' || name === 'fdatasync') return /^\d+<([^>]*)>/.exec(args)?.[1] ?? '';
    return /^(\d+)/.exec(args)?.[1] ?? '';
  };
  text.split('\n').forEach((line, at) => {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) return;
    const [, tid, rest] = m as unknown as [string, string, string];
    const resumed = /^<\.\.\. (\w+) resumed>.*= (-?\d+)/.exec(rest);
    if (resumed) {
      const p = pending.get(tid);
      pending.delete(tid);
      if (p && resumed[2] !== '-1') calls.push({ at, ...p });
      return;
    }
    const call = /^(\w+)\((.*)$/.exec(rest);
    if (!call) return;
    const [, name, args] = call as unknown as [string, string, string];
    const target = targetOf(name, args);
    if (/<unfinished \.\.\.>$/.test(rest)) pending.set(tid, { name, target, tid });
    else if (!/= -1 /.test(rest)) calls.push({ at, name, target, tid });
  });
  return calls;
}

/** multus with two Go loopback delegates, its caches in `cniDir`. */
const twoLoopbacks = (cniDir: string) => ({
  cniVersion: '1.0.0',
  name: 'multus-cni-network',
  type: 'multus',
  cniDir,
  binDir: GO,
  delegates: [
    { cniVersion: '1.0.0', name: 'lo-a', type: 'loopback' },
    { cniVersion: '1.0.0', name: 'lo-b', type: 'loopback' },
  ],
});

describe('multus ADD durability', () => {
  it('renames every cache file into place, then fsyncs each file and directory once, all before the result is printed', async (ctx) => {
    need(ctx);
    const cniDir = join(work, 'multus');
    const conf = twoLoopbacks(cniDir);
    const env = (command: string) => ({
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: `${tag}c`,
      CNI_NETNS: `/var/run/netns/${ns}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: GO,
    });
    const log = join(work, 'strace.log');
    const add = spawnSync(
      STRACE as string,
      [
        '-f',
        '-qq',
        '-y',
        '-o',
        log,
        '-e',
        'trace=rename,renameat,renameat2,fsync,fdatasync,write,writev',
        join(BIN_DIR, 'multus'),
      ],
      { env: env('ADD'), input: JSON.stringify(conf), encoding: 'utf8' },
    );
    try {
      expect(add.status, `${add.stdout}\n${add.stderr}`).toBe(0);
      expect(JSON.parse(add.stdout)).toMatchObject({ cniVersion: '1.0.0' });
      const calls = parseTrace(readFileSync(log, 'utf8'));
      const inCache = (p: string) => p.startsWith(`${cniDir}/`);
      const renames = calls.filter((c) => c.name.startsWith('rename') && inCache(c.target));
      const files = renames.map((r) => r.target).sort();
      // The delegate cache and one result cache per delegate (libcni's names).
      expect(files).toEqual(
        [
          join(cniDir, `${tag}c`),
          join(cniDir, 'results', `lo-a-${tag}c-eth0`),
          join(cniDir, 'results', `lo-b-${tag}c-net1`),
        ].sort(),
      );
      expect(readdirSync(cniDir).filter((n) => n.startsWith('.tmp'))).toEqual([]);
      // The plugin's main thread printing its result (the delegates write to their own stdout too).
      const main = /^(\d+)/.exec(readFileSync(log, 'utf8'))?.[1];
      const printed = calls.find((c) => c.name.startsWith('write') && c.target === '1' && c.tid === main);
      expect(printed, 'the result written to stdout').toBeDefined();
      const syncs = calls.filter((c) => c.name === 'fsync' || c.name === 'fdatasync');
      const lastRename = Math.max(...renames.map((r) => r.at));
      // Nothing of the caches is fsynced one by one between delegates: every fsync of a cache file
      // or directory comes after the last rename.
      const cacheSyncs = syncs.filter((s) => s.target === cniDir || inCache(s.target));
      expect(cacheSyncs.filter((s) => s.at < lastRename)).toEqual([]);
      // Each file and each directory exactly once, completed before the result was printed.
      const want = [...files, cniDir, join(cniDir, 'results')].sort();
      expect(cacheSyncs.map((s) => s.target).sort()).toEqual(want);
      for (const s of cacheSyncs)
        expect(s.at, `${s.target} synced before the reply`).toBeLessThan(printed?.at ?? 0);
      expect(new Set(files.map((f) => dirname(f)))).toEqual(new Set([cniDir, join(cniDir, 'results')]));
    } finally {
      const del = spawnSync(join(BIN_DIR, 'multus'), [], {
        env: env('DEL'),
        input: JSON.stringify(conf),
        encoding: 'utf8',
      });
      expect(del.status, del.stdout).toBe(0);
    }
    expect(readdirSync(cniDir).filter((n) => n !== 'results')).toEqual([]);
  });

  it('an fsync failing at the flush fails ADD with code 5 naming the folder, and leaves no cache behind', async (ctx) => {
    need(ctx);
    const cniDir = join(work, 'multus-eio');
    const conf = twoLoopbacks(cniDir);
    const call = (command: string) =>
      runPlugin(multusPlugin(), {
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}e`,
          CNI_NETNS: `/var/run/netns/${ns}`,
          CNI_IFNAME: 'eth0',
          CNI_PATH: GO,
        },
        stdin: JSON.stringify(conf),
      });
    const open = fsp.open.bind(fsp);
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await open(...args);
      if (String(args[0]).startsWith(join(cniDir, 'results'))) {
        fh.sync = async () => {
          throw Object.assign(new Error(`EIO: i/o error, fsync '${String(args[0])}'`), { code: 'EIO' });
        };
      }
      return fh;
    });
    try {
      const add = await call('ADD');
      expect(add.exitCode).not.toBe(0);
      const err = JSON.parse(add.stdout);
      expect(err.code).toBe(5);
      expect(err.msg).toContain(cniDir);
      expect(err.msg).toMatch(/EIO|i\/o error/i);
    } finally {
      spy.mockRestore();
    }
    // The rollback DELs what was attached: no result cache, no delegate cache.
    expect(readdirSync(cniDir).filter((n) => n !== 'results')).toEqual([]);
    expect(readdirSync(join(cniDir, 'results'))).toEqual([]);
    expect((await call('DEL')).exitCode).toBe(0);
  });
});
