// Configs at the legacy spec versions (no cniVersion, which the spec reads as 0.1.0; 0.1.0; 0.2.0)
// through the built binaries in real network namespaces: every plugin whose reference accepts
// `version.All` accepts them on ADD and DEL, results come back in the 0.1/0.2 shape (ip4/ip6),
// delegated results are converted to the config's version, and an ADD whose result cannot be
// given at 0.1.0/0.2.0 (no IPAM) is undone. All host-side links live in a node namespace of this
// file's own; the plugins run inside it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `vl${process.pid % 100000}`;
const o2 = 60 + (process.pid % 60);
const node = `${tag}-node`;
const netnses: string[] = [];
let work = '';
let seq = 0;

const VERSIONS = [undefined, '0.1.0', '0.2.0'] as const;
type Legacy = (typeof VERSIONS)[number];
const withVersion = (v: Legacy, conf: Record<string, unknown>) => (v ? { cniVersion: v, ...conf } : conf);

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

function netns(): string {
  const name = `${tag}-c${seq++}`;
  spawnSync('ip', ['netns', 'del', name]);
  ip('netns', 'add', name);
  netnses.push(name);
  return name;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}

const GO = '/usr/lib/cni';

/** Runs dist/bin/<type> (or a Go plugin) inside the node namespace, as a runtime on that node would. */
function run(
  type: string,
  command: string,
  containerNs: string,
  conf: unknown,
  id = `${tag}-id`,
  dir = pluginDir(node),
): Run {
  const r = spawnSync('nsenter', [`--net=/run/netns/${node}`, join(dir, type)], {
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/run/netns/${containerNs}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: dir,
    },
    input: JSON.stringify(conf),
    encoding: 'utf8',
    timeout: 20_000,
  });
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
}

/** The result of a legacy-version ADD: the 0.1/0.2 shape, stamped with the config's version. */
function expectLegacyResult(r: Run, v: Legacy, prefix: string): string {
  expect(r.status, r.stdout + r.stderr).toBe(0);
  const res = r.json as { cniVersion: string; ip4?: { ip: string; gateway?: string }; [k: string]: unknown };
  expect(res.cniVersion).toBe(v ?? '0.1.0');
  expect(res).not.toHaveProperty('ips');
  expect(res).not.toHaveProperty('interfaces');
  expect(res.ip4?.ip.startsWith(prefix), JSON.stringify(res)).toBe(true);
  return res.ip4?.ip ?? '';
}

const links = (ns: string) =>
  (JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string }>).map((l) => l.ifname);
const addrs = (ns: string, dev: string) =>
  (
    JSON.parse(ip('-j', '-n', ns, 'addr', 'show', 'dev', dev)) as Array<{
      addr_info: Array<{ local: string; prefixlen: number; family: string }>;
    }>
  )[0]?.addr_info
    .filter((a) => a.family === 'inet')
    .map((a) => `${a.local}/${a.prefixlen}`) ?? [];
const files = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name],
      )
    : [];
/** host-local's address files (the by-design lock and last_reserved_ip files aside). */
const leases = (dir: string) => files(dir).filter((f) => /\/\d[\d.:a-f]*$/.test(f));

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  if (process.getuid?.() !== 0) return;
  spawnSync('ip', ['netns', 'del', node]);
  ip('netns', 'add', node);
  ip('-n', node, 'link', 'set', 'lo', 'up');
});

afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['netns', 'del', node]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.each(VERSIONS)('legacy version: %s', (v) => {
  it('multus: ADD converts the delegate result (1.0.0) to the config version; DEL twice', (ctx) => {
    need(ctx);
    const ns = netns();
    const dir = join(work, `multus-${seq}`);
    const conf = withVersion(v, {
      name: 'multus-cni-network',
      type: 'multus',
      cniDir: join(dir, 'cache'),
      binDir: pluginDir(node),
      confDir: join(dir, 'confdir'),
      delegates: [
        {
          cniVersion: '1.0.0',
          name: `${tag}-cluster`,
          plugins: [
            {
              type: 'bridge',
              bridge: `${tag}mb`,
              isGateway: true,
              ipam: { type: 'host-local', subnet: `10.${o2}.1.0/24`, dataDir: join(dir, 'ipam') },
            },
          ],
        },
      ],
    });
    const add = run('multus', 'ADD', ns, conf);
    const addr = expectLegacyResult(add, v, `10.${o2}.1.`);
    expect(addrs(ns, 'eth0')).toEqual([addr]);
    const del = run('multus', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(links(ns)).not.toContain('eth0');
    expect(leases(join(dir, 'ipam'))).toEqual([]);
    expect(run('multus', 'DEL', ns, conf).status).toBe(0);
  });

  it('flannel: ADD through bridge + host-local at the config version; DEL frees the address', (ctx) => {
    need(ctx);
    const ns = netns();
    const dir = join(work, `flannel-${seq}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'subnet.env'),
      `FLANNEL_NETWORK=10.${o2}.0.0/16\nFLANNEL_SUBNET=10.${o2}.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
    );
    const conf = withVersion(v, {
      name: 'cbr0',
      type: 'flannel',
      subnetFile: join(dir, 'subnet.env'),
      dataDir: join(dir, 'flannel'),
      delegate: { bridge: `${tag}fb`, hairpinMode: true, isDefaultGateway: true },
      ipam: { dataDir: join(dir, 'ipam') },
    });
    const add = run('flannel', 'ADD', ns, conf);
    const addr = expectLegacyResult(add, v, `10.${o2}.2.`);
    expect((add.json as { ip4: { gateway: string } }).ip4.gateway).toBe(`10.${o2}.2.1`);
    expect(addrs(ns, 'eth0')).toEqual([addr]);
    const del = run('flannel', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(links(ns)).not.toContain('eth0');
    expect(leases(join(dir, 'ipam'))).toEqual([]);
    expect(files(join(dir, 'flannel'))).toEqual([]);
    expect(run('flannel', 'DEL', ns, conf).status).toBe(0);
  });

  it('whereabouts: ADD allocates at the config version; DEL releases it', (ctx) => {
    need(ctx);
    const ns = netns();
    const dir = join(work, `wb-${seq}`);
    const conf = withVersion(v, {
      name: `${tag}-wb`,
      type: 'macvlan',
      ipam: {
        type: 'whereabouts',
        range: `10.${o2}.3.0/24`,
        gateway: `10.${o2}.3.254`,
        datastore: 'file',
        data_dir: dir,
      },
    });
    const add = run('whereabouts', 'ADD', ns, conf);
    const addr = expectLegacyResult(add, v, `10.${o2}.3.`);
    expect((add.json as { ip4: { gateway: string } }).ip4.gateway).toBe(`10.${o2}.3.254`);
    const held = () => files(dir).filter((f) => f.includes('/owners/') || f.includes('/4/'));
    expect(held().some((f) => f.endsWith(addr.split('/')[0] as string))).toBe(true);
    const del = run('whereabouts', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(held()).toEqual([]);
    expect(run('whereabouts', 'DEL', ns, conf).status).toBe(0);
  });

  it('tuning: chained after a 0.x prevResult, ADD sets the MTU and DEL restores it', (ctx) => {
    need(ctx);
    const ns = netns();
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    const prevResult = withVersion(v, { ip4: { ip: `10.${o2}.4.2/24`, gateway: `10.${o2}.4.1` } });
    const conf = withVersion(v, {
      name: `${tag}-tu`,
      type: 'tuning',
      mtu: 1400,
      dataDir: join(work, `tuning-${seq}`),
      prevResult,
    });
    const add = run('tuning', 'ADD', ns, conf);
    expect(expectLegacyResult(add, v, `10.${o2}.4.`)).toBe(`10.${o2}.4.2/24`);
    const mtu = () =>
      (JSON.parse(ip('-j', '-n', ns, 'link', 'show', 'eth0')) as Array<{ mtu: number }>)[0]?.mtu;
    expect(mtu()).toBe(1400);
    const del = run('tuning', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(mtu()).toBe(1500);
    expect(files(join(work, `tuning-${seq}`))).toEqual([]);
    expect(run('tuning', 'DEL', ns, conf).status).toBe(0);
  });

  it('host-device: ADD moves the device in with a static address; DEL moves it back', (ctx) => {
    need(ctx);
    const ns = netns();
    const dev = `${tag}h${seq}`;
    ip('-n', node, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`);
    const conf = withVersion(v, {
      name: `${tag}-hd`,
      type: 'host-device',
      device: dev,
      ipam: { type: 'static', addresses: [{ address: `10.${o2}.5.7/24`, gateway: `10.${o2}.5.1` }] },
    });
    const add = run('host-device', 'ADD', ns, conf);
    expect(expectLegacyResult(add, v, `10.${o2}.5.`)).toBe(`10.${o2}.5.7/24`);
    expect(addrs(ns, 'eth0')).toEqual([`10.${o2}.5.7/24`]);
    expect(links(node)).not.toContain(dev);
    const del = run('host-device', 'DEL', ns, conf);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(links(node)).toContain(dev);
    expect(links(ns)).not.toContain('eth0');
    expect(run('host-device', 'DEL', ns, conf).status).toBe(0);
  });

  it('bridge + host-local: the same result as the Go bridge 1.1.1 at this version', (ctx) => {
    need(ctx);
    if (!existsSync(join(GO, 'bridge'))) ctx.skip(`Go bridge missing in ${GO}`);
    const results = [pluginDir(node), GO].map((dir, i) => {
      const ns = netns();
      const conf = withVersion(v, {
        name: `${tag}-cmp${i}`,
        type: 'bridge',
        bridge: `${tag}cb${i}`,
        isGateway: true,
        ipam: {
          type: 'host-local',
          subnet: `10.${o2}.${7 + i}.0/24`,
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: join(work, `cmp-${seq}`),
        },
      });
      const add = run('bridge', 'ADD', ns, conf, `${tag}-cmp`, dir);
      expect(add.status, `${dir}: ${add.stdout}${add.stderr}`).toBe(0);
      expect(run('bridge', 'DEL', ns, conf, `${tag}-cmp`, dir).status).toBe(0);
      return add.stdout.replaceAll(`10.${o2}.${7 + i}.`, '10.X.Y.');
    });
    expect(JSON.parse(results[0] ?? '')).toEqual(JSON.parse(results[1] ?? ''));
    expectLegacyResult(
      { status: 0, stdout: '', stderr: '', json: JSON.parse(results[0] ?? '') },
      v,
      '10.X.Y.',
    );
  });

  it('CHECK is refused as the Go skel refuses it (CHECK needs 0.4.0)', (ctx) => {
    need(ctx);
    const ns = netns();
    const conf = withVersion(v, {
      name: `${tag}-ck`,
      type: 'static',
      ipam: { type: 'static', addresses: [{ address: `10.${o2}.6.7/24` }] },
    });
    const check = run('static', 'CHECK', ns, { ...conf, prevResult: { ip4: { ip: `10.${o2}.6.7/24` } } });
    expect(check.status).toBe(1);
    expect(check.json).toMatchObject({ code: 1 });
    expect(String(check.json?.msg)).toContain('does not allow CHECK');
  });
});

describe('an ADD whose result cannot be given at 0.1.0/0.2.0 is undone (F11)', () => {
  it.for([
    ['bridge', '0.2.0'],
    ['bridge', undefined],
    ['macvlan', '0.1.0'],
  ] as const)('%s without IPAM at %s: code 1 naming the fix, no link left behind', ([type, v], ctx) => {
    need(ctx);
    const ns = netns();
    const master = `${tag}mm${seq}`;
    if (type === 'macvlan') {
      ip('-n', node, 'link', 'add', master, 'type', 'veth', 'peer', 'name', `${master}p`);
      ip('-n', node, 'link', 'set', master, 'up');
    }
    const nodeLinks = links(node);
    const conf = withVersion(
      v,
      type === 'bridge'
        ? { name: `${tag}-l2`, type, bridge: `${tag}l2` }
        : { name: `${tag}-l2`, type, master, mode: 'bridge' },
    );
    const add = run(type, 'ADD', ns, conf);
    expect(add.status).toBe(1);
    expect(add.json).toMatchObject({ code: 1 });
    expect(String(add.json?.msg)).toContain('no valid IP addresses, and a 0.1.0/0.2.0 result must hold one');
    expect(String(add.json?.msg)).toContain('cniVersion 0.3.0 or later');
    expect(links(ns)).toEqual(['lo']);
    // The bridge device itself is a by-design leftover (the reference keeps it too); no veth is.
    expect(links(node).filter((l) => !nodeLinks.includes(l) && l !== `${tag}l2`)).toEqual([]);
    expect(run(type, 'DEL', ns, conf).status).toBe(0);
  });
});
