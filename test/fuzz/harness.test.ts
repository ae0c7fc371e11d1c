// The fuzz harness catches what it claims to catch: the conform fixture plugin, correct and broken
// in one way at a time, run through FuzzWorld and judged by protocolProblems and leftovers. A
// harness that missed a leak or a second JSON document would let every fuzz suite pass vacuously.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetSnapshot } from '../../src/conform/snapshot.js';
import { type FuzzCall, FuzzWorld, fuzzUnavailable, type WorldSnapshot } from '../helpers/fuzz.js';
import type { FuzzCase } from '../helpers/fuzz-arbs.js';
import { formatFailures } from '../helpers/fuzz-flows.js';
import { leftovers, protocolProblems } from '../helpers/fuzz-judge.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/conform/', import.meta.url));
const fixture = (mode?: string) => (mode ? join(FIXTURES, 'broken', mode) : join(FIXTURES, 'plugin.mjs'));
const why =
  fuzzUnavailable() ?? (spawnSync('iptables-save').status !== 0 ? 'iptables not usable' : undefined);

describe.skipIf(why !== undefined)('fuzz harness', () => {
  let world: FuzzWorld;
  let n = 0;
  beforeAll(async () => {
    world = await FuzzWorld.create();
  });
  afterAll(async () => {
    await world?.dispose();
  });

  /** ADD then DEL of the fixture in a fresh container: the calls and what they left. */
  async function addDel(mode?: string) {
    const c = world.addContainer();
    const dataDir = join(world.caseDir(), 'data');
    mkdirSync(dataDir, { recursive: true });
    const config = {
      cniVersion: '1.0.0',
      name: `fz${world.tag}h`,
      type: 'ck-fixture',
      ipam: { type: 'ck-fixture-ipam', subnet: `10.59.${++n}.0/24`, dataDir },
    };
    const env = (cmd: string) => ({
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: `fz${world.tag}-h${n}`,
      CNI_NETNS: c.path,
      CNI_IFNAME: 'eth0',
      CNI_PATH: FIXTURES,
    });
    try {
      const before = await world.snapshot(c.path, [dataDir]);
      const add = await world.run(fixture(mode), env('ADD'), JSON.stringify(config));
      const del = await world.run(fixture(mode), env('DEL'), JSON.stringify(config));
      const after = await world.snapshot(c.path, [dataDir]);
      return { add, del, left: leftovers(before, after, { config, runTag: world.tag }) };
    } finally {
      world.removeContainer(c.name);
    }
  }

  it('passes the correct fixture: one result, quiet DEL, nothing left', async () => {
    const { add, del, left } = await addDel();
    expect(protocolProblems(add, '1.0.0')).toEqual([]);
    expect(protocolProblems(del)).toEqual([]);
    expect(left).toEqual([]);
  });

  it.each([
    ['leave-link', /link ckf[0-9a-f]+ \(veth\) left behind/],
    ['leave-file', /file .*10\.59\.\d+\.2 left behind/],
    ['leave-rule', /rule ip4 filter: -A CNI-FORWARD .* left behind/],
    ['leave-route', /route inet 10\.59\.\d+\.2 dev lo table 200/],
  ])('finds what %s leaves behind', async (mode, want) => {
    const { del, left } = await addDel(mode);
    expect(del.exitCode).toBe(0);
    expect(left.join('\n')).toMatch(want);
  });

  it('flags a log line before the JSON and an error that exits 0', async () => {
    const { add } = await addDel('log-before-json');
    expect(protocolProblems(add, '1.0.0').join('\n')).toMatch(/not one JSON document/);
    const c = world.addContainer();
    try {
      const bad = await world.run(
        fixture('exit-zero-on-error'),
        { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: c.path, CNI_IFNAME: 'eth0' },
        '{not json',
      );
      expect(protocolProblems(bad, '1.0.0').join('\n')).toMatch(/ADD result/);
    } finally {
      world.removeContainer(c.name);
    }
  });

  it('bounds a run in time and kills what it started, also outside its process group', async () => {
    const mark = `9${process.pid}.${world.tag.length}7`;
    const script = join(world.caseDir(), 'hang.sh');
    // A child that leaves the process group (setsid) survives a group kill; the pids cgroup does not.
    writeFileSync(script, `#!/bin/sh\nsetsid sleep ${mark} &\nsleep ${mark}\n`);
    chmodSync(script, 0o755);
    const r = await world.run(script, { CNI_COMMAND: 'ADD' }, '', { timeoutMs: 500 });
    expect(r.timedOut).toBe(true);
    expect(protocolProblems(r).join('\n')).toMatch(/ran past its .* bound/);
    await new Promise((res) => setTimeout(res, 200));
    const left = spawnSync('pgrep', ['-f', `^sleep ${mark}$`], { encoding: 'utf8' }).stdout.trim();
    if (world.pidsBounded) expect(left).toBe('');
    else spawnSync('pkill', ['-9', '-f', `^sleep ${mark}$`]);
  });
});

describe('fuzz harness judgement (no namespaces)', () => {
  it('reports a suite that ran too few cases without a replay line, and a case with its recipe and tags', () => {
    const short = formatFailures([
      { plugin: 'bridge', seed: 7, run: -1, problems: ['only 2 case(s) ran'], stdin: '', env: {} },
    ]);
    expect(short).toContain('bridge seed 7 case #-1:\n  - only 2 case(s) ran');
    expect(short).not.toContain('replay:');
    const recipe: FuzzCase = {
      plugin: 'bridge',
      version: '1.1.0',
      variant: 0,
      mutations: [],
      raw: null,
      env: { containerId: 'ok', ifname: 'lo', netns: 'ok', args: 'none', path: 'ok' },
      flow: 'lifecycle',
      killAfterMs: 0,
    };
    const full = formatFailures([
      { plugin: 'bridge', seed: 7, run: 3, problems: ['link lo changed'], recipe, stdin: '{}', env: {} },
    ]);
    expect(full).toContain('case #3 [F15]:');
    expect(full).toContain(`replay: CNI_KIT_FUZZ_CASE='${JSON.stringify(recipe)}'`);
  });

  const net = (links: Array<[string, string, string[]]>): NetSnapshot => ({
    links: new Map(links.map(([name, kind, flags]) => [name, { kind, flags }])),
    addrs: [],
    routes: [],
    rules: [],
    iptables: null,
    nft: null,
  });
  const snap = (links: Array<[string, string, string[]]>): WorldSnapshot => ({
    node: net(links),
    container: undefined,
    files: new Set(),
  });

  it('lets the bridge plugin change its own bridge, not another link named as the bridge (F12)', () => {
    const config = { type: 'bridge', bridge: 'br0' };
    const opts = { config, runTag: 'tag', plugin: 'bridge' };
    expect(leftovers(snap([['br0', 'bridge', []]]), snap([['br0', 'bridge', ['UP']]]), opts)).toEqual([]);
    expect(leftovers(snap([]), snap([['br0', 'bridge', ['UP']]]), opts)).toEqual([]);
    expect(leftovers(snap([['br0', 'veth', []]]), snap([['br0', 'veth', ['UP']]]), opts)).toEqual([
      'node: link br0 changed: flags  -> UP',
    ]);
  });

  it('flags raw errno text and internals in an error message (F14, F17)', () => {
    const call = (msg: string): FuzzCall => ({
      command: 'DEL',
      exitCode: 1,
      signal: null,
      stdout: JSON.stringify({ code: 999, msg }),
      stderr: '',
      timedOut: false,
      killed: false,
      pids: [],
      durationMs: 1,
      json: { code: 999, msg },
    });
    expect(protocolProblems(call("ENAMETOOLONG: name too long, mkdir '/x/aaaa'")).join()).toMatch(
      /raw errno/,
    );
    expect(protocolProblems(call('ipam.type: undefined is missing')).join()).toMatch(/internals/);
    expect(protocolProblems(call('ipam.type: missing; set it to "host-local"'))).toEqual([]);
  });
});
