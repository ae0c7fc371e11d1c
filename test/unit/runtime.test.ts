import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from 'cni-kit';
import {
  CniAggregateError,
  CniRuntime,
  loadConfList,
  loadConfLists,
  type RuntimeConf,
} from 'cni-kit/runtime';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeCacheRecord } from '../../src/runtime/cache.js';
import { makePluginDir, type PluginDir, recorder } from '../fixtures/delegate/plugins.js';
import { cniRejectionOf } from '../helpers/errors.js';

interface Rec {
  type: string;
  cmd: string;
  cid: string;
  netns: string;
  ifname: string;
  args: string;
  path: string;
  stdin: Record<string, unknown>;
}

let pd: PluginDir;
let log: string;
let cacheDir: string;
let warnings: string[];
const extraEnv: Record<string, string> = {};

beforeAll(() => {
  pd = makePluginDir('ckrt');
  for (const n of ['p-a', 'p-b', 'p-c']) recorder(pd, n);
  pd.script(
    'v100-only',
    `cat >/dev/null; [ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.7.0.5/16"}]}'; exit 0`,
  );
  pd.script(
    'no-version',
    `cat >/dev/null; [ "$CNI_COMMAND" = ADD ] && echo '{"ips":[{"address":"10.7.0.6/16"}]}'; exit 0`,
  );
  log = join(pd.dir, 'calls.log');
  cacheDir = join(pd.dir, 'cache');
});
afterAll(() => pd.cleanup());
beforeEach(() => {
  rmSync(log, { force: true });
  rmSync(cacheDir, { recursive: true, force: true });
  warnings = [];
  for (const k of Object.keys(extraEnv)) delete extraEnv[k];
});

function runtime(): CniRuntime {
  return new CniRuntime({
    pluginDirs: [join(pd.dir, 'nothing-here'), pd.dir],
    cacheDir,
    env: { PATH: process.env.PATH, RECORD_LOG: log, ...extraEnv },
    stderr: null,
    warn: (m) => warnings.push(m),
  });
}

function calls(): Rec[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Rec);
}

const listText = (version: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: version,
    name: 'ckrtnet',
    plugins: [
      { type: 'p-a', capabilities: { portMappings: true }, keep: { x: 1 } },
      { type: 'p-b', name: 'ignored', cniVersion: '0.1.0' },
      { type: 'p-c', capabilities: { mac: true, ips: false } },
    ],
    ...extra,
  });

const rt: RuntimeConf = {
  containerId: 'ctr-1',
  netns: '/var/run/netns/ckrt',
  ifname: 'eth0',
  args: [
    ['K8S_POD_NAME', 'web'],
    ['IgnoreUnknown', '1'],
  ],
  capabilityArgs: {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    ips: ['10.1.1.1/24'],
  },
};

describe('CniRuntime ADD/CHECK/DEL', () => {
  it('chains ADD forward with injected name, version, prevResult and declared capabilities only', async () => {
    const text = listText('1.0.0');
    const result = await runtime().addNetworkList(text, rt);
    const c = calls();
    expect(c.map((x) => `${x.type}:${x.cmd}`)).toEqual(['p-a:ADD', 'p-b:ADD', 'p-c:ADD']);
    for (const x of c) {
      expect(x.stdin.name).toBe('ckrtnet');
      expect(x.stdin.cniVersion).toBe('1.0.0');
      expect([x.cid, x.netns, x.ifname, x.args]).toEqual([
        'ctr-1',
        '/var/run/netns/ckrt',
        'eth0',
        'K8S_POD_NAME=web;IgnoreUnknown=1',
      ]);
      expect(x.path).toBe(`${join(pd.dir, 'nothing-here')}:${pd.dir}`);
    }
    expect(c[0]?.stdin.runtimeConfig).toEqual({ portMappings: rt.capabilityArgs?.portMappings });
    expect(c[0]?.stdin.keep).toEqual({ x: 1 });
    expect(c[0]?.stdin.prevResult).toBeUndefined();
    expect(c[1]?.stdin.runtimeConfig).toBeUndefined();
    expect(c[2]?.stdin.runtimeConfig).toBeUndefined(); // declares mac (not supplied) and ips: false
    expect((c[1]?.stdin.prevResult as { interfaces?: unknown[] } | undefined)?.interfaces).toEqual([
      { name: 'p-a' },
    ]);
    expect(result.cniVersion).toBe('1.0.0');
    expect((result as { interfaces: unknown[] }).interfaces).toEqual([
      { name: 'p-a' },
      { name: 'p-b' },
      { name: 'p-c' },
    ]);

    const file = join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0');
    const d = decodeCacheRecord(readFileSync(file, 'utf8'));
    if (!d.ok || !d.record) throw new Error('cache record not decodable');
    expect(Buffer.from(d.record.config).toString()).toBe(text);
    expect(d.record.netns).toBe(rt.netns);
    expect(d.record.cniArgs).toEqual(rt.args);
    expect(d.record.result).toEqual(result);
    expect((await runtime().getCachedAttachments('ctr-1')).map((a) => a.networkName)).toEqual(['ckrtnet']);
  });

  it('CHECKs forward and DELs in reverse with the cached result, then drops the cache', async () => {
    const r = runtime();
    const added = await r.addNetworkList(listText('0.4.0'), rt);
    rmSync(log);
    await r.checkNetworkList(listText('0.4.0'), rt);
    await r.delNetworkList(listText('0.4.0'), rt);
    const c = calls();
    expect(c.map((x) => `${x.type}:${x.cmd}`)).toEqual([
      'p-a:CHECK',
      'p-b:CHECK',
      'p-c:CHECK',
      'p-c:DEL',
      'p-b:DEL',
      'p-a:DEL',
    ]);
    for (const x of c) expect(x.stdin.prevResult).toEqual(added);
    expect(existsSync(join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0'))).toBe(false);
    rmSync(log);
    await r.delNetworkList(listText('0.4.0'), rt); // again: no cache, still fine
    expect(calls().every((x) => x.stdin.prevResult === undefined)).toBe(true);
    expect(warnings).toEqual([]);
  });

  it('refuses CHECK below 0.4.0, skips it with disableCheck, and gives no prevResult on DEL below 0.4.0', async () => {
    const r = runtime();
    await r.addNetworkList(listText('0.3.1'), rt);
    const e = await cniRejectionOf(r.checkNetworkList(listText('0.3.1'), rt));
    expect(e.code).toBe(ErrorCode.IncompatibleCNIVersion);
    expect(e.message).toContain('"0.3.1" does not support the CHECK command');
    rmSync(log);
    await r.checkNetworkList(listText('1.0.0', { disableCheck: true }), rt);
    expect(calls()).toEqual([]);
    await r.delNetworkList(listText('0.3.1'), rt);
    expect(calls().map((x) => x.stdin.prevResult)).toEqual([undefined, undefined, undefined]);
  });

  it('a corrupt cache file: DEL warns by name and proceeds; CHECK fails naming it', async () => {
    const file = join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0');
    mkdirSync(join(cacheDir, 'results'), { recursive: true });
    writeFileSync(file, '');
    const r = runtime();
    const e = await cniRejectionOf(r.checkNetworkList(listText('1.0.0'), rt));
    expect(e.message).toContain(file);
    expect(e.message).toContain('empty');
    await r.delNetworkList(listText('1.0.0'), rt);
    expect(calls().map((x) => `${x.type}:${x.cmd}:${x.stdin.prevResult === undefined}`)).toEqual([
      'p-c:DEL:true',
      'p-b:DEL:true',
      'p-a:DEL:true',
    ]);
    expect(warnings.join('\n')).toContain(file);
    expect(existsSync(file)).toBe(false);
  });

  it('reads a legacy cache file (the bare result JSON)', async () => {
    mkdirSync(join(cacheDir, 'results'), { recursive: true });
    const legacy = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.3.0.9/24' }], dns: {} };
    writeFileSync(join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0'), JSON.stringify(legacy));
    const cached = await runtime().getNetworkListCachedResult(listText('1.0.0'), rt);
    expect(cached).toEqual({ cniVersion: '1.0.0', ips: [{ address: '10.3.0.9/24' }] });
  });

  it('keeps the code of a failing plugin, names it, stops the chain and writes no cache', async () => {
    extraEnv.FAIL_P_B_ADD = '11';
    const e = await cniRejectionOf(runtime().addNetworkList(listText('1.0.0'), rt));
    expect(e.code).toBe(11);
    expect(e.details).toBe('by request');
    expect(e.message).toContain('plugin type="p-b" name="ckrtnet" failed (add): p-b refuses ADD');
    expect(calls().map((x) => x.type)).toEqual(['p-a', 'p-b']);
    expect(existsSync(join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0'))).toBe(false);
  });

  it('kills a hanging plugin after timeoutMs, names it, and stops the chain', async () => {
    pd.script('p-hang', 'cat >/dev/null; exec sleep 30');
    const text = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'ckrtnet',
      plugins: [{ type: 'p-hang' }, { type: 'p-a' }],
    });
    const r = new CniRuntime({
      pluginDirs: [pd.dir],
      cacheDir,
      stderr: null,
      timeoutMs: 300,
      killGraceMs: 100,
    });
    const e = await cniRejectionOf(r.addNetworkList(text, rt));
    expect(e.code).toBe(ErrorCode.TryAgainLater);
    expect(e.message).toContain('plugin type="p-hang" name="ckrtnet" failed (add)');
    expect(e.message).toContain('did not finish within 300 ms');
    expect(calls()).toEqual([]);
  });

  it('names a missing plugin and every directory searched', async () => {
    const text = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'ckrtnet',
      plugins: [{ type: 'p-a' }, { type: 'nope' }],
    });
    const e = await cniRejectionOf(runtime().addNetworkList(text, rt));
    expect(e.message).toContain('plugin type="nope" name="ckrtnet" failed (add)');
    expect(e.message).toContain(pd.dir);
    expect(e.message).toContain(join(pd.dir, 'nothing-here'));
  });

  it('DEL goes on past a failing and a missing plugin, runs every DEL, reports all and keeps the cache', async () => {
    const text = (types: string[]) =>
      JSON.stringify({ cniVersion: '1.0.0', name: 'ckrtnet', plugins: types.map((type) => ({ type })) });
    const r = runtime();
    const added = await r.addNetworkList(text(['p-a', 'p-b', 'p-c']), rt);
    rmSync(log);
    // p-c is gone from CNI_PATH (the stock flannel list chaining a portmap that is not installed)
    // and p-b fails: p-a's DEL must still run, with the cached result.
    extraEnv.FAIL_P_B_DEL = '11';
    const e = await cniRejectionOf(runtime().delNetworkList(text(['p-a', 'p-b', 'nope']), rt));
    expect(calls().map((x) => `${x.type}:${x.cmd}`)).toEqual(['p-b:DEL', 'p-a:DEL']);
    expect(calls().find((x) => x.type === 'p-a')?.stdin.prevResult).toEqual(added);
    expect(e).toBeInstanceOf(CniAggregateError);
    expect((e as CniAggregateError).errors).toHaveLength(2);
    expect(e.message).toContain('plugin type="nope" name="ckrtnet" failed (del)');
    expect(e.message).toContain('p-b refuses DEL');
    expect(existsSync(join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0'))).toBe(true);
    // One failure alone keeps its own error (and code); a clean retry drops the cache.
    rmSync(log);
    const one = await cniRejectionOf(runtime().delNetworkList(text(['p-a', 'p-b']), rt));
    expect(one).not.toBeInstanceOf(CniAggregateError);
    expect(one.code).toBe(11);
    expect(calls().map((x) => `${x.type}:${x.cmd}`)).toEqual(['p-b:DEL', 'p-a:DEL']);
    delete extraEnv.FAIL_P_B_DEL;
    await runtime().delNetworkList(text(['p-a', 'p-b']), rt);
    expect(existsSync(join(cacheDir, 'results', 'ckrtnet-ctr-1-eth0'))).toBe(false);
  });

  it('a 300-character container ID gets a bounded cache name; a libcni-named file of up to 255 bytes is still read', async () => {
    const long = { ...rt, containerId: `c${'9'.repeat(299)}` };
    const r = runtime();
    const added = await r.addNetworkList(listText('1.0.0'), long);
    const names = readdirSync(join(cacheDir, 'results'));
    expect(names).toHaveLength(1);
    expect(Buffer.byteLength(names[0] as string)).toBeLessThanOrEqual(255);
    expect(await r.getNetworkListCachedResult(listText('1.0.0'), long)).toEqual(added);
    expect((await r.getCachedAttachments(long.containerId)).map((a) => a.containerId)).toEqual([
      long.containerId,
    ]);
    await r.checkNetworkList(listText('1.0.0'), long);
    await r.delNetworkList(listText('1.0.0'), long);
    expect(readdirSync(join(cacheDir, 'results'))).toEqual([]);
    // 230 characters: libcni (and older versions) named the file plainly; it is found and removed.
    const mid = { ...rt, containerId: 'm'.repeat(230) };
    await r.addNetworkList(listText('1.0.0'), mid);
    const [hashed] = readdirSync(join(cacheDir, 'results'));
    renameSync(
      join(cacheDir, 'results', hashed as string),
      join(cacheDir, 'results', `ckrtnet-${mid.containerId}-eth0`),
    );
    rmSync(log);
    await r.delNetworkList(listText('1.0.0'), mid);
    expect(calls().every((x) => x.stdin.prevResult !== undefined)).toBe(true);
    expect(readdirSync(join(cacheDir, 'results'))).toEqual([]);
  });

  it('validates identifiers on ADD', async () => {
    const e = await cniRejectionOf(
      runtime().addNetworkList(listText('1.0.0'), { ...rt, ifname: 'way-too-long-ifname' }),
    );
    expect(e.code).toBe(ErrorCode.InvalidEnvironmentVariables);
    expect(calls()).toEqual([]);
  });

  it('converts results to the list version (and fills a missing cniVersion)', async () => {
    const one = (type: string, v: string) =>
      JSON.stringify({ cniVersion: v, name: 'ckrtnet', plugins: [{ type }] });
    const r = runtime();
    expect(await r.addNetworkList(one('v100-only', '0.4.0'), rt)).toEqual({
      cniVersion: '0.4.0',
      ips: [{ version: '4', address: '10.7.0.5/16' }],
      dns: {},
    });
    expect(await r.addNetworkList(one('no-version', '1.0.0'), { ...rt, ifname: 'eth1' })).toEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.7.0.6/16' }],
    });
  });

  it('runs a single-plugin config with addNetwork/delNetwork', async () => {
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'ckrtsingle', type: 'p-a' });
    const r = runtime();
    const res = await r.addNetwork(conf, rt);
    await r.checkNetwork(conf, rt);
    await r.delNetwork(conf, rt);
    expect(calls().map((x) => x.cmd)).toEqual(['ADD', 'CHECK', 'DEL']);
    expect(calls()[2]?.stdin.prevResult).toEqual(res);
  });
});

describe('CniRuntime GC, STATUS, VERSION', () => {
  it('GC DELs cached attachments not listed, then sends GC with both attachment keys', async () => {
    const r = runtime();
    const text = listText('1.1.0');
    await r.addNetworkList(text, rt);
    await r.addNetworkList(text, { ...rt, containerId: 'ctr-2' });
    rmSync(log);
    const valid = [{ containerId: 'ctr-1', ifname: 'eth0' }];
    await r.gcNetworkList(text, { validAttachments: valid });
    const c = calls();
    expect(c.map((x) => `${x.type}:${x.cmd}:${x.cid}`)).toEqual([
      'p-c:DEL:ctr-2',
      'p-b:DEL:ctr-2',
      'p-a:DEL:ctr-2',
      'p-a:GC:',
      'p-b:GC:',
      'p-c:GC:',
    ]);
    const gc = c[3]?.stdin ?? {};
    // On the wire the attachments keep GC's own casing.
    const wire = [{ containerID: 'ctr-1', ifname: 'eth0' }];
    expect(gc['cni.dev/valid-attachments']).toEqual(wire);
    expect(gc['cni.dev/attachments']).toEqual(wire);
    expect(gc.runtimeConfig).toBeUndefined();
    expect(gc.prevResult).toBeUndefined();
    expect((await r.getCachedAttachments()).map((a) => a.containerId)).toEqual(['ctr-1']);
  });

  it('GC continues on error and reports every failure; disableGC does nothing', async () => {
    extraEnv.FAIL_P_A_GC = '100';
    extraEnv.FAIL_P_C_GC = '101';
    const e = await cniRejectionOf(runtime().gcNetworkList(listText('1.1.0'), { validAttachments: [] }));
    expect(e).toBeInstanceOf(CniAggregateError);
    expect((e as CniAggregateError).errors.map((x) => x.code)).toEqual([100, 101]);
    expect(calls().map((x) => x.type)).toEqual(['p-a', 'p-b', 'p-c']);
    rmSync(log);
    await runtime().gcNetworkList(listText('1.1.0', { disableGC: true }), { validAttachments: [] });
    await runtime().gcNetworkList(listText('1.0.0'), { validAttachments: [] });
    expect(calls()).toEqual([]);
  });

  it('STATUS stops at the first error and keeps its code; before 1.1.0 it is a no-op', async () => {
    await runtime().getStatusNetworkList(listText('1.1.0'));
    expect(calls().map((x) => x.cmd)).toEqual(['STATUS', 'STATUS', 'STATUS']);
    rmSync(log);
    extraEnv.FAIL_P_B_STATUS = '50';
    const e = await cniRejectionOf(runtime().getStatusNetworkList(listText('1.1.0')));
    expect(e.code).toBe(ErrorCode.PluginNotAvailable);
    expect(calls().map((x) => x.type)).toEqual(['p-a', 'p-b']);
    rmSync(log);
    await runtime().getStatusNetworkList(listText('1.0.0'));
    expect(calls()).toEqual([]);
  });

  it('validateNetworkList probes VERSION and returns the enabled capabilities', async () => {
    expect(await runtime().validateNetworkList(listText('1.0.0'))).toEqual(['mac', 'portMappings']);
    extraEnv.RECORDER_VERSIONS = '0.4.0';
    const e = await cniRejectionOf(runtime().validateNetworkList(listText('1.0.0')));
    expect(e).toBeInstanceOf(CniAggregateError);
    expect(e.message).toContain('does not support config version "1.0.0"');
  });
});

describe('config directory loading', () => {
  it('picks by name in sorted order, merges sibling plugins, falls back to .conf', async () => {
    const dir = join(pd.dir, 'net.d');
    mkdirSync(join(dir, 'second'), { recursive: true });
    const l = (name: string, type: string) =>
      JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type }] });
    writeFileSync(join(dir, '20-first.conflist'), l('first', 'late'));
    writeFileSync(join(dir, '10-first.conflist'), l('first', 'early'));
    writeFileSync(join(dir, '30-second.conflist'), l('second', 'base'));
    writeFileSync(join(dir, 'second', 'extra.conf'), JSON.stringify({ type: 'sibling' }));
    writeFileSync(
      join(dir, '40-single.conf'),
      JSON.stringify({ cniVersion: '0.4.0', name: 'single', type: 'lone' }),
    );
    writeFileSync(join(dir, '50-broken.conflist'), '{ nope');
    writeFileSync(join(dir, 'README.md'), 'ignored');
    expect((await loadConfList(dir, 'first')).plugins.map((p) => p.type)).toEqual(['early']);
    expect((await loadConfList(dir, 'second')).plugins.map((p) => p.type)).toEqual(['base', 'sibling']);
    const single = await loadConfList(dir, 'single');
    expect([single.cniVersion, single.plugins[0]?.type]).toEqual(['0.4.0', 'lone']);
    const e = await cniRejectionOf(loadConfList(dir, 'missing'));
    expect(e.message).toContain('no net configuration with name "missing"');
    expect(e.message).toContain('50-broken.conflist');
    const all = await loadConfLists(dir);
    expect(all.map((x) => [x.file.slice(dir.length + 1), x.list?.name ?? `error ${x.error?.code}`])).toEqual([
      ['10-first.conflist', 'first'],
      ['20-first.conflist', 'first'],
      ['30-second.conflist', 'second'],
      ['40-single.conf', 'single'],
      ['50-broken.conflist', 'error 6'],
    ]);
    expect(await loadConfLists(join(pd.dir, 'no-such-dir'))).toEqual([]);
  });
});
