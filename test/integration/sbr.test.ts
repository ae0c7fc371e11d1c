// The sbr binary in real namespaces, chained after our macvlan and after our bridge (each run in a
// node netns of its own, under nsenter): `ip rule` and `ip route show table all` in the container
// match what the Go reference 1.1.1 leaves for the same prevResult; DEL removes the rules (ours also
// empties the tables it picked) whichever implementation made them; the netns flock is honoured;
// plus the conformance kit over a prevResult fixture.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  conform,
  expectAllPass,
  need as needConform,
  ours,
  PREV_RESULT,
  useConformSuite,
} from '../helpers/conform.js';
import { pluginDir } from '../helpers/mode.js';
import { TestNetnses } from '../helpers/netns.js';
import { execPluginIn, untilStdout } from '../helpers/plugin.js';

useConformSuite();

const tag = `isb${process.pid % 100000}`;
const GO = '/usr/lib/cni/sbr';
const netnses = new TestNetnses();
let seq = 0;
let work: string;

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function need(ctx: TestContext, go = false): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (go && !existsSync(GO)) ctx.skip(`Go reference sbr not installed at ${GO}`);
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(() => {
  netnses.removeAll();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface World {
  node: string;
  ctr: string;
  ctrPath: string;
  id: string;
}
function world(): World {
  const n = ++seq;
  const node = `${tag}-${n}n`;
  const ctr = `${tag}-${n}c`;
  for (const x of [node, ctr]) netnses.add(x);
  return { node, ctr, ctrPath: `/var/run/netns/${ctr}`, id: `${tag}-ctr${n}` };
}

interface Run {
  status: number | null;
  stdout: string;
  json: Record<string, unknown> | undefined;
  ms: number;
}
/** Runs `type` (ours from the node's plugin dir, or a Go binary path) in the node netns. */
function run(w: World, bin: string, cmd: string, conf: object): Run {
  const exe = bin.startsWith('/') ? bin : `${pluginDir(w.node)}${bin}`;
  const t0 = Date.now();
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: w.id,
    CNI_NETNS: w.ctrPath,
    CNI_IFNAME: 'net1',
    CNI_PATH: pluginDir(w.node),
  };
  const r = execPluginIn(w.node, exe, env, JSON.stringify(conf));
  const json = r.json as Record<string, unknown> | undefined;
  return { status: r.status, stdout: r.stdout + r.stderr, json, ms: Date.now() - t0 };
}

const ipam = {
  type: 'static',
  addresses: [
    { address: '10.62.0.5/24', gateway: '10.62.0.1' },
    { address: 'fd62::5/64', gateway: 'fd62::1' },
  ],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.62.0/24', gw: '10.62.0.7' }, { dst: '::/0' }],
};

/** The main plugin's ADD in a fresh world; returns the world and its result. */
function attach(main: 'macvlan' | 'bridge'): { w: World; prev: Record<string, unknown>; conf: object } {
  const w = world();
  let conf: object;
  if (main === 'macvlan') {
    ip('-n', w.node, 'link', 'add', 'eth0', 'type', 'bridge');
    ip('-n', w.node, 'link', 'set', 'eth0', 'up');
    conf = { cniVersion: '1.0.0', name: `${tag}net`, type: 'macvlan', master: 'eth0', ipam };
  } else {
    conf = { cniVersion: '1.0.0', name: `${tag}net`, type: 'bridge', bridge: 'sbr0', ipam };
  }
  const r = run(w, main, 'ADD', conf);
  expect(r.status, r.stdout).toBe(0);
  // IPv6 DAD must finish before the kernel's routes are what they will be.
  ip('-n', w.ctr, 'addr', 'show', 'dev', 'net1');
  for (let i = 0; i < 50 && ip('-n', w.ctr, '-6', 'addr', 'show', 'tentative').trim(); i++)
    spawnSync('sleep', ['0.1']);
  return { w, prev: r.json ?? {}, conf };
}

const sbrConf = (prev: object, extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: `${tag}net`,
  type: 'sbr',
  prevResult: prev,
  ...extra,
});

/** Rules and every table but local, as `ip` prints them. */
function routing(ctr: string): string {
  const out = [
    ip('-n', ctr, '-4', 'rule', 'show'),
    ip('-n', ctr, '-6', 'rule', 'show'),
    ip('-n', ctr, '-4', 'route', 'show', 'table', 'all'),
    ip('-n', ctr, '-6', 'route', 'show', 'table', 'all'),
  ].join('');
  return out
    .split('\n')
    .filter((l) => l && !l.includes('table local'))
    .join('\n');
}

describe('sbr after a main plugin, compared with the Go reference', () => {
  for (const main of ['macvlan', 'bridge'] as const) {
    it(`after our ${main}: the same rules and tables as Go's sbr; DEL removes the rules`, async (ctx) => {
      need(ctx, true);
      const seen: string[] = [];
      for (const bin of ['sbr', GO]) {
        const { w, prev } = attach(main);
        const before = routing(w.ctr);
        const add = run(w, bin, 'ADD', sbrConf(prev));
        expect(add.status, add.stdout).toBe(0);
        seen.push(routing(w.ctr));
        const del = run(w, bin, 'DEL', sbrConf(prev));
        expect(del.status, del.stdout).toBe(0);
        expect(routing(w.ctr)).not.toMatch(/from 10\.62\.0\.5|from fd62::5/);
        // Ours also gives main its routes back (the reference leaves them in the tables).
        if (bin === 'sbr') expect(routing(w.ctr)).toEqual(before);
      }
      expect(seen[0]).toEqual(seen[1]);
      expect(seen[0]).toMatch(/from 10\.62\.0\.5 lookup 100/);
      expect(seen[0]).toMatch(/from fd62::5 lookup 101/);
      expect(seen[0]).toMatch(/default via 10\.62\.0\.1 dev net1 table 100/);
      expect(seen[0]).toMatch(/10\.62\.0\.0\/24 dev net1 table 100 proto kernel scope link src 10\.62\.0\.5/);
      // Nothing of net1 left in main.
      expect(seen[0]).not.toMatch(/^\S.* dev net1 (?!table)/m);
    }, 60_000);
  }

  it('Go ADD + our DEL, and our ADD + Go DEL, leave no rule; ours also empties the tables', async (ctx) => {
    need(ctx, true);
    for (const [adder, deleter] of [
      [GO, 'sbr'],
      ['sbr', GO],
    ] as const) {
      const { w, prev } = attach('macvlan');
      expect(run(w, adder, 'ADD', sbrConf(prev)).status).toBe(0);
      // Our CHECK finds the rules whichever implementation made them.
      expect(run(w, 'sbr', 'CHECK', sbrConf(prev)).status).toBe(0);
      const del = run(w, deleter, 'DEL', sbrConf(prev));
      expect(del.status, del.stdout).toBe(0);
      const after = routing(w.ctr);
      expect(after).not.toMatch(/lookup 10[01]/);
      if (deleter === 'sbr') expect(after).not.toMatch(/table 10[01]/);
    }
  }, 60_000);

  it('table: rules into that table only, as the reference (1.6+); gateways and addSourceHints', async (ctx) => {
    need(ctx);
    let { w, prev } = attach('macvlan');
    const before = routing(w.ctr);
    expect(run(w, 'sbr', 'ADD', sbrConf(prev, { table: 500 })).status).toBe(0);
    const after = routing(w.ctr);
    expect(after).toMatch(/from 10\.62\.0\.5 lookup 500/);
    expect(after).toMatch(/from fd62::5 lookup 500/);
    expect(after.split('\n').filter((l) => !l.includes('lookup 500'))).toEqual(before.split('\n'));
    expect(run(w, 'sbr', 'CHECK', sbrConf(prev, { table: 500 })).status).toBe(0);
    expect(run(w, 'sbr', 'DEL', sbrConf(prev, { table: 500 })).status).toBe(0);
    expect(routing(w.ctr)).toEqual(before);

    ({ w, prev } = attach('macvlan'));
    expect(
      run(w, 'sbr', 'ADD', sbrConf(prev, { gateways: ['10.62.0.9'], addSourceHints: true })).status,
    ).toBe(0);
    const r = routing(w.ctr);
    expect(r).toMatch(/default via 10\.62\.0\.9 dev net1 table 100/);
    expect(r).toMatch(/^10\.62\.0\.0\/24 dev net1 scope link src 10\.62\.0\.5/m);
    expect(r).not.toMatch(/^default via .* dev net1 (?!table)/m);
  }, 60_000);

  it('waits for the flock another holder has on the netns (the reference lock)', async (ctx) => {
    need(ctx);
    if (spawnSync('flock', ['--version']).status !== 0) ctx.skip('flock(1) not installed');
    const { w, prev } = attach('macvlan');
    // The holder says when it has the lock and, just before letting go, when it lets go. ADD starts
    // only once the lock is held (a loaded machine can take long to start flock) and must end
    // after it was let go; a fixed head start of 200 ms was not enough under load.
    const released = join(work, `released-${w.id}`);
    const holder = spawn(
      'flock',
      ['-x', w.ctrPath, 'sh', '-c', `echo held; sleep 3; date +%s%3N > ${released}`],
      { stdio: ['ignore', 'pipe', 'ignore'], detached: true },
    );
    const exited = new Promise((r) => holder.once('exit', r));
    try {
      await untilStdout(holder, 'held', 'flock taking the lock', 20_000);
      const add = run(w, 'sbr', 'ADD', sbrConf(prev));
      const ended = Date.now();
      expect(add.status, add.stdout).toBe(0);
      await exited;
      const letGo = Number(readFileSync(released, 'utf8'));
      expect(ended, `ADD ended ${letGo - ended} ms before the holder let go`).toBeGreaterThanOrEqual(letGo);
    } finally {
      if (holder.exitCode === null && holder.signalCode === null && holder.pid)
        process.kill(-holder.pid, 'SIGKILL');
      await exited;
    }
  }, 60_000);

  it('errors are code 7 naming the field; DEL succeeds with the netns gone; a failed ADD leaves main as it was', async (ctx) => {
    need(ctx);
    const { w, prev } = attach('macvlan');
    const before = routing(w.ctr);
    const bad = run(w, 'sbr', 'ADD', sbrConf(prev, { gateways: ['10.62.0.1', '10.62.0.2'] }));
    expect(bad.status).not.toBe(0);
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringMatching(/^gateways: /) });
    // A gateway that is not on-link makes the default route fail after the rules were added.
    const unreachable = run(w, 'sbr', 'ADD', sbrConf(prev, { gateways: ['10.99.0.1'] }));
    expect(unreachable.status).not.toBe(0);
    expect(routing(w.ctr)).toEqual(before);
    ip('netns', 'del', w.ctr);
    expect(run(w, 'sbr', 'DEL', sbrConf(prev)).status).toBe(0);
  }, 60_000);
});

describe('conformance kit', () => {
  it('sbr, chained after a prevResult fixture', async (ctx) => {
    needConform(ctx, ours('sbr'));
    const r = await conform(
      ours('sbr'),
      { type: 'sbr' },
      { versions: ['0.3.1', '1.1.0'], prevResult: PREV_RESULT },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);
});
