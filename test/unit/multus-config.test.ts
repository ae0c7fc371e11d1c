// multus config fields (defaults, the comma-separated globalNamespaces, load errors) and delegate
// planning without any network: order, interface naming, defaultNetworks and system namespaces.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, convertResult, type NetConf, type Result, runPlugin, toCurrentResult } from 'cni-kit';
import { KubeApiError, type KubeClient, type NetworkAttachmentDefinition } from 'cni-kit/k8s';
import { memoryNetlink } from 'cni-kit/netlink';
import { CniRuntime } from 'cni-kit/runtime';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multusConfig } from '../../examples/multus/config.js';
import {
  cachePath,
  type Delegate,
  loadDelegates,
  planDelegates,
  removeDelegates,
  saveDelegates,
} from '../../examples/multus/delegates.js';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { applyDefaultRoutes, recordDefaultRoutes } from '../../examples/multus/routes.js';
import { ResultCache } from '../../src/runtime/cache.js';

const parseMultusConf = (c: NetConf) => multusConfig.parse(c);

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), `multuscfg${process.pid}-`));
  writeFileSync(join(dir, 'extra.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'extra', type: 'ptp' }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = (extra: Record<string, unknown>): NetConf =>
  ({ cniVersion: '1.0.0', name: 'multus-cni-network', type: 'multus', ...extra }) as NetConf;

describe('multus config', () => {
  it('applies the reference defaults and keeps the fields it does not know', () => {
    expect(parseMultusConf(base({ delegates: [{ type: 'bridge', name: 'b' }], vendor: { x: 1 } }))).toEqual({
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      vendor: { x: 1 },
      delegates: [{ type: 'bridge', name: 'b' }],
      defaultNetworks: [],
      confDir: '/etc/cni/multus/net.d',
      cniDir: '/var/lib/cni/multus',
      binDir: '/opt/cni/bin',
      logLevel: 'panic',
      logToStderr: true,
      namespaceIsolation: false,
      globalNamespaces: ['default'],
      systemNamespaces: ['kube-system'],
      multusNamespace: 'kube-system',
      readinessindicatorfile: '',
      retryDeleteOnError: false,
    });
  });

  it('reads globalNamespaces as a comma-separated string that replaces the default', () => {
    const c = parseMultusConf(base({ clusterNetwork: 'x', globalNamespaces: ' team-a, shared ,' }));
    expect(c.globalNamespaces).toEqual(['team-a', 'shared']);
  });

  it('refuses configs it cannot run, naming the field', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /at least one delegate\/clusterNetwork must be specified/],
      [{ delegates: 'x' }, /delegates: "x" must be a list/],
      [{ clusterNetwork: 5 }, /clusterNetwork: 5 must be a string/],
      [
        { clusterNetwork: 'x', logLevel: 'loud' },
        /logLevel: "loud" must be one of "debug", "verbose", "error", "panic"/,
      ],
      [
        { clusterNetwork: 'x', namespaceIsolation: 'yes' },
        /namespaceIsolation: "yes" must be a boolean; use true or false/,
      ],
      [
        { clusterNetwork: 'x', systemNamespaces: 'kube-system' },
        /systemNamespaces: "kube-system" must be a list; use a list of strings/,
      ],
    ];
    for (const [extra, re] of cases) {
      const err = (() => {
        try {
          parseMultusConf(base(extra));
        } catch (e) {
          return e;
        }
      })();
      expect(err, JSON.stringify(extra)).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(7);
      expect((err as CniError).message).toMatch(re);
    }
  });
});

function fakeKube(nads: Record<string, string>): KubeClient {
  const nf = () => new KubeApiError(404, 'not found');
  return {
    getPod: async () => {
      throw nf();
    },
    getNetworkAttachmentDefinition: async (ns, name) => {
      const config = nads[`${ns}/${name}`];
      if (config === undefined) {
        throw new KubeApiError(404, `${name} not found`);
      }
      return { metadata: { name, namespace: ns }, spec: { config } } satisfies NetworkAttachmentDefinition;
    },
    listNetworkAttachmentDefinitions: async () => [],
    updatePodAnnotations: async () => {
      throw nf();
    },
    createEvent: async () => {
      throw nf();
    },
  };
}

describe('delegate planning', () => {
  const conf = (extra: Record<string, unknown>) => ({
    ...parseMultusConf(base({ confDir: dir, ...extra })),
    cniVersion: '1.0.0',
  });

  it('orders cluster network, defaultNetworks, annotation; names by position; skips defaultNetworks in system namespaces', async () => {
    const kube = fakeKube({
      'kube-system/cluster': '{"type":"bridge"}',
      'app/a': '{"type":"macvlan"}',
      'app/b': '{"type":"ipvlan"}',
    });
    const annotations = { 'k8s.v1.cni.cncf.io/networks': 'a@mv0,b' };
    const plan = await planDelegates({
      conf: conf({ clusterNetwork: 'cluster', defaultNetworks: ['extra'] }),
      ifname: 'eth0',
      pod: { namespace: 'app', name: 'p' },
      podObject: { metadata: { name: 'p', namespace: 'app', annotations } },
      kube,
    });
    expect(plan.map((d) => [d.name, d.ifname, d.master, d.conf.cniVersion])).toEqual([
      ['kube-system/cluster', 'eth0', true, '1.0.0'],
      ['extra', 'net1', false, '0.4.0'],
      ['app/a', 'mv0', false, '1.0.0'],
      ['app/b', 'net3', false, '1.0.0'],
    ]);
    const sys = await planDelegates({
      conf: conf({ clusterNetwork: 'cluster', defaultNetworks: ['extra'] }),
      ifname: 'eth0',
      pod: { namespace: 'kube-system', name: 'p' },
      podObject: { metadata: { name: 'p', namespace: 'kube-system' } },
      kube,
    });
    expect(sys.map((d) => d.name)).toEqual(['kube-system/cluster']);
  });

  it('the cache round-trips and a truncated cache is reported as corrupt, not thrown', async () => {
    const plan = await planDelegates({
      conf: conf({
        delegates: [
          { name: 'c', type: 'bridge' },
          { name: 'd', type: 'ptp' },
        ],
      }),
      ifname: 'eth0',
    });
    await saveDelegates(dir, 'ctr1', plan);
    expect(await loadDelegates(dir, 'ctr1', 'eth0')).toEqual({ status: 'ok', delegates: plan });
    writeFileSync(join(dir, 'ctr1'), '{"kind":"cniKitMultusV1","delegates":[{"conf"');
    const r = await loadDelegates(dir, 'ctr1', 'eth0');
    expect(r.status).toBe('corrupt');
    expect(await loadDelegates(dir, 'none', 'eth0')).toEqual({ status: 'missing' });
    // The reference multus cache (a list of DelegateNetConf with base64 Bytes) is read too.
    const bytes = Buffer.from(JSON.stringify({ cniVersion: '0.4.0', name: 'cbr0', type: 'bridge' })).toString(
      'base64',
    );
    writeFileSync(
      join(dir, 'ctr2'),
      JSON.stringify([
        { Name: 'cbr0', Bytes: bytes },
        { Name: 'ns/x', ifnameRequest: 'data0', Bytes: bytes },
      ]),
    );
    const go = await loadDelegates(dir, 'ctr2', 'eth0');
    expect(go.status === 'ok' && go.delegates.map((d) => [d.name, d.ifname, d.master])).toEqual([
      ['cbr0', 'eth0', true],
      ['ns/x', 'data0', false],
    ]);
  });
});

describe('delegate cache names', () => {
  it('a 300-character container ID gets a bounded name; a plain-named cache of an older version is still found and removed', async () => {
    const plan = await planDelegates({
      conf: parseMultusConf(base({ confDir: dir, delegates: [{ name: 'c', type: 'bridge' }] })),
      ifname: 'eth0',
    });
    const sub = mkdtempSync(join(dir, 'names-'));
    const long = `c${'0123456789abcdef'.repeat(19)}`.slice(0, 300);
    await saveDelegates(sub, long, plan);
    expect(readdirSync(sub).every((n) => Buffer.byteLength(n) <= 255)).toBe(true);
    expect(await loadDelegates(sub, long, 'eth0')).toEqual({ status: 'ok', delegates: plan });
    // Another long ID sharing the first 250 characters has a cache of its own.
    expect(await loadDelegates(sub, `${long.slice(0, 250)}x`, 'eth0')).toEqual({ status: 'missing' });
    await removeDelegates(sub, long);
    expect(await loadDelegates(sub, long, 'eth0')).toEqual({ status: 'missing' });
    expect(readdirSync(sub)).toEqual([]);
    // An ID of 230 characters: older versions wrote <cniDir>/<id>; DEL must still find it.
    const mid = 'd'.repeat(230);
    writeFileSync(
      join(sub, mid),
      JSON.stringify({ kind: 'cniKitMultusV1', containerId: mid, delegates: plan }),
    );
    expect(await loadDelegates(sub, mid, 'eth0')).toEqual({ status: 'ok', delegates: plan });
    await removeDelegates(sub, mid);
    expect(readdirSync(sub)).toEqual([]);
  });

  it('distinct container IDs never share a cache file, and every name fits NAME_MAX', () => {
    const id = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,400}$/);
    fc.assert(
      fc.property(id, id, (a, b) => {
        const [pa, pb] = [cachePath('/d', a), cachePath('/d', b)];
        expect(Buffer.byteLength(pa.slice(3))).toBeLessThanOrEqual(255);
        expect(pa === pb).toBe(a === b);
      }),
    );
  });
});

describe('readiness indicator file', () => {
  it('ADD fails with code 11 while the file is missing, STATUS reports 50, both pass once it exists', async () => {
    const file = join(dir, 'ready');
    const conf = JSON.stringify(
      base({
        cniVersion: '1.1.0',
        delegates: [{ name: 'c', type: 'bridge' }],
        readinessindicatorfile: file,
        cniDir: dir,
      }),
    );
    const plugin = multusPlugin({ readinessTimeoutMs: 30 });
    const env = (command: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '',
    });
    const add = await runPlugin(plugin, { env: env('ADD'), stdin: conf });
    expect(add.exitCode).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 11, msg: expect.stringContaining(file) });
    const st = await runPlugin(plugin, { env: env('STATUS'), stdin: conf });
    expect(JSON.parse(st.stdout)).toMatchObject({ code: 50 });
    writeFileSync(file, '');
    expect((await runPlugin(plugin, { env: env('STATUS'), stdin: conf })).exitCode).toBe(0);
  });
});

describe('default-route move (simulated kernel)', () => {
  const v4 = (i: number) => ({ cidr: `10.0.${i}.2/24`, gw: `10.0.${i}.1` });
  const v6 = (i: number) => ({ cidr: `fd00:${i + 1}::2/64`, gw: `fd00:${i + 1}::1` });
  const isDef = (dst: string) => dst === '0.0.0.0/0' || dst === '::/0';
  const attachment = fc.record({
    dual: fc.boolean(),
    default4: fc.boolean(),
    default6: fc.boolean(),
    version: fc.constantFrom('0.4.0', '1.0.0', '1.1.0'),
  });

  it('leaves exactly the owner default routes in the netns, the results and the changed cache records', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(attachment, { minLength: 1, maxLength: 4 }),
        fc.nat(3),
        fc.constantFrom<Array<'4' | '6'>>(['4'], ['6'], ['4', '6']),
        async (atts, ownerPick, fams) => {
          const owner = ownerPick % atts.length;
          const nl = memoryNetlink();
          const netns = `/run/netns/dr${run}`;
          const cacheDir = join(dir, `dr${run++}`);
          nl.addNetns(netns);
          const delegates: Delegate[] = [];
          const results: Result[] = [];
          await nl.inNetns(netns, (ns) => {
            atts.forEach((a, i) => {
              const ifname = `if${i}`;
              nl.addPhysicalLink(ifname, { netns });
              const routes: Result['routes'] = [{ dst: `192.168.${i}.0/24`, gw: v4(i).gw }];
              ns.addAddress(ifname, v4(i).cidr);
              if (a.dual) ns.addAddress(ifname, v6(i).cidr, { noDad: true });
              if (a.default4) routes.push({ dst: '0.0.0.0/0', gw: v4(i).gw });
              if (a.dual && a.default6) routes.push({ dst: '::/0', gw: v6(i).gw });
              for (const r of routes) ns.addRoute({ dst: r.dst, gw: r.gw, dev: ifname, metric: 100 + i });
              results.push({ cniVersion: '1.1.0', ips: [{ address: v4(i).cidr }], routes });
              const gws =
                i === owner
                  ? fams.filter((f) => f === '4' || a.dual).map((f) => (f === '4' ? v4(i).gw : v6(i).gw))
                  : [];
              delegates.push({
                conf: { cniVersion: a.version, name: `net${i}`, type: 'x' },
                name: `ns/net${i}`,
                ifname,
                master: i === 0,
                ...(gws.length ? { defaultRoute: gws } : {}),
              });
            });
          });
          const cache = new ResultCache(cacheDir);
          for (const [i, d] of delegates.entries()) {
            await cache.write({
              containerId: 'c1',
              ifname: d.ifname,
              networkName: `net${i}`,
              config: JSON.stringify(d.conf),
              result: convertResult(results[i] as Result, atts[i]?.version ?? '') as unknown as Record<
                string,
                unknown
              >,
            });
          }
          const files = () =>
            readdirSync(join(cacheDir, 'results')).map((f) =>
              readFileSync(join(cacheDir, 'results', f), 'utf8'),
            );
          const before = files();

          const changed = await applyDefaultRoutes(nl, netns, delegates, results);
          const rt = new CniRuntime({ pluginDirs: [], cacheDir });
          await recordDefaultRoutes(
            rt,
            (d) => ({ containerId: 'c1', ifname: d.ifname }),
            delegates,
            results,
            changed,
          );

          const wanted = (delegates[owner]?.defaultRoute ?? []).map((gw) => ({ dev: `if${owner}`, gw }));
          const inNs = nl
            .inspect(netns)
            .routes.filter((r) => isDef(r.dst))
            .map((r) => ({ dev: r.dev, gw: r.gw }));
          expect(inNs.sort((a, b) => String(a.gw).localeCompare(String(b.gw)))).toEqual(
            [...wanted].sort((a, b) => a.gw.localeCompare(b.gw)),
          );
          const after = files();
          atts.forEach((a, i) => {
            const mine = (results[i]?.routes ?? []).filter((r) => isDef(r.dst)).map((r) => r.gw);
            expect(mine).toEqual(i === owner ? (delegates[i]?.defaultRoute ?? []) : []);
            expect(results[i]?.routes?.[0]).toEqual({ dst: `192.168.${i}.0/24`, gw: v4(i).gw });
            // A record is rewritten only when its default routes differ from what ADD cached.
            const had = [a.default4 && v4(i).gw, a.dual && a.default6 && v6(i).gw].filter(Boolean);
            const touched = JSON.stringify(had) !== JSON.stringify(mine);
            expect(changed.includes(i)).toBe(touched);
            const rec = JSON.parse(after[i] as string).result;
            expect(rec.cniVersion).toBe(a.version);
            if (!touched) expect(after[i]).toBe(before[i]);
            else expect(toCurrentResult(rec).routes).toEqual(results[i]?.routes);
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a cache record gone between ADD and the move is an I/O error naming the file', async () => {
    const rt = new CniRuntime({ pluginDirs: [], cacheDir: join(dir, 'dr-missing') });
    const d: Delegate = {
      conf: { cniVersion: '1.0.0', name: 'gone', type: 'x' },
      name: 'ns/gone',
      ifname: 'net1',
      master: false,
    };
    const err = await recordDefaultRoutes(
      rt,
      () => ({ containerId: 'c1', ifname: 'net1' }),
      [d],
      [{ cniVersion: '1.1.0', routes: [] }],
      [0],
    ).catch((e) => e);
    expect(err).toBeInstanceOf(CniError);
    expect(err.code).toBe(5);
    expect(err.message).toContain(join(dir, 'dr-missing', 'results', 'gone-c1-net1'));
  });
});

describe('temp files of killed cache writes (F10)', () => {
  it('DEL removes a dead writer temp file from the cni dir and keeps a live one', async () => {
    const cniDir = mkdtempSync(join(dir, 'tmpfiles-'));
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const stale = `.tmp.ctr-x.${dead}.fc02ab5e`;
    const live = `.tmp.ctr-y.${process.pid}.0a0b0c0d`;
    writeFileSync(join(cniDir, stale), '{');
    writeFileSync(join(cniDir, live), '{');
    await removeDelegates(cniDir, 'ctr-x');
    expect(readdirSync(cniDir)).toEqual([live]);
  });
});
