// ptp, macvlan, host-device, loopback, tuning, ipvlan and vlan binaries in real network namespaces,
// with state read back through iproute2 (not through our own netlink layer).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linuxNetlink } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { execPlugin } from '../helpers/plugin.js';

const tag = `pmn${process.pid % 100000}`;
const net = `172.${16 + (process.pid % 16)}`;
const netnses: string[] = [];
const hostLinks: string[] = [];
let work: string;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const ipj = <T>(...args: string[]): T => JSON.parse(ip('-j', ...args)) as T;
interface JLink {
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  operstate: string;
  ifalias?: string;
  txqlen?: number;
  addr_info?: Array<{ local: string; prefixlen: number }>;
}

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

function newNetns(suffix: string): string {
  const name = `${tag}-${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  ip('netns', 'add', name);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

function vethPair(a: string, b: string): void {
  spawnSync('ip', ['link', 'del', a]);
  ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
  hostLinks.push(a, b);
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  for (const l of hostLinks) spawnSync('ip', ['link', 'del', l]);
  if (work) rmSync(work, { recursive: true, force: true });
});

const env = (cmd: string, netns: string, ifname = 'eth0', cid = `${tag}-c`) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: cid,
  CNI_NETNS: netns,
  CNI_IFNAME: ifname,
  CNI_PATH: '/usr/lib/cni',
});
const hostLocal = (subnet: string, extra: Record<string, unknown> = {}) => ({
  type: 'host-local',
  subnet,
  dataDir: join(work, 'ipam'),
  ...extra,
});
const nsName = (p: string) => p.split('/').pop() ?? '';
const ping = (netns: string, addr: string) =>
  spawnSync('ip', ['netns', 'exec', nsName(netns), 'ping', '-c1', '-W2', addr]).status;

describe('ptp', () => {
  it('routes the container through the host end; CHECK; DEL twice', (ctx) => {
    need(ctx);
    const ns = newNetns('ptp');
    const conf = {
      cniVersion: '0.4.0',
      name: `${tag}ptp`,
      type: 'ptp',
      ipam: hostLocal(`${net}.51.0/24`, { routes: [{ dst: '0.0.0.0/0' }] }),
    };
    const add = execPlugin('ptp', env('ADD', ns), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const r = add.json as {
      ips: Array<{ address: string; gateway: string; version: string }>;
      interfaces: Array<{ name: string }>;
    };
    expect(r.ips[0]).toMatchObject({ version: '4', address: `${net}.51.2/24`, gateway: `${net}.51.1` });
    const routes = ip('-n', nsName(ns), 'route');
    expect(routes).toContain(`${net}.51.1 dev eth0 scope link src ${net}.51.2`);
    expect(routes).toContain(`${net}.51.0/24 via ${net}.51.1 dev eth0`);
    expect(ip('route', 'show', `${net}.51.2`)).toContain(r.interfaces[0]?.name);
    expect(ping(ns, `${net}.51.1`)).toBe(0);
    const check = execPlugin('ptp', env('CHECK', ns), JSON.stringify({ ...conf, prevResult: add.json }));
    expect(check.status, check.stdout).toBe(0);
    expect(execPlugin('ptp', env('DEL', ns), JSON.stringify(conf)).status).toBe(0);
    expect(spawnSync('ip', ['link', 'show', r.interfaces[0]?.name ?? 'x']).status).not.toBe(0);
    expect(execPlugin('ptp', env('DEL', ns), JSON.stringify(conf)).status).toBe(0);
  });
});

describe('macvlan', () => {
  it('two containers on a veth master reach each other', (ctx) => {
    need(ctx);
    const master = `${tag}mv0`;
    vethPair(master, `${tag}mv1`);
    ip('link', 'set', master, 'up');
    ip('link', 'set', `${tag}mv1`, 'up');
    const a = newNetns('mva');
    const b = newNetns('mvb');
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}mv`,
      type: 'macvlan',
      master,
      mode: 'bridge',
      ipam: hostLocal(`${net}.52.0/24`),
    };
    const ra = execPlugin('macvlan', env('ADD', a, 'eth0', `${tag}-a`), JSON.stringify(conf));
    expect(ra.status, ra.stdout + ra.stderr).toBe(0);
    const rb = execPlugin(
      'macvlan',
      env('ADD', b, 'eth0', `${tag}-b`),
      JSON.stringify({ ...conf, mac: '0a:58:00:00:00:0b' }),
    );
    expect(rb.status, rb.stdout + rb.stderr).toBe(0);
    const link = ipj<Array<JLink & { linkinfo: { info_kind: string; info_data: { mode: string } } }>>(
      '-d',
      '-n',
      nsName(b),
      'link',
      'show',
      'eth0',
    )[0];
    expect(link?.linkinfo.info_kind).toBe('macvlan');
    expect(link?.linkinfo.info_data.mode).toBe('bridge');
    expect(link?.address).toBe('0a:58:00:00:00:0b');
    expect(ping(a, `${net}.52.3`)).toBe(0);
    const check = execPlugin(
      'macvlan',
      env('CHECK', a, 'eth0', `${tag}-a`),
      JSON.stringify({ ...conf, prevResult: ra.json }),
    );
    expect(check.status, check.stdout).toBe(0);
    for (const [n, cid] of [
      [a, `${tag}-a`],
      [b, `${tag}-b`],
    ] as const) {
      expect(execPlugin('macvlan', env('DEL', n, 'eth0', cid), JSON.stringify(conf)).status).toBe(0);
      expect(spawnSync('ip', ['-n', nsName(n), 'link', 'show', 'eth0']).status).not.toBe(0);
    }
  });

  it('names a missing master in a code 7 error', (ctx) => {
    need(ctx);
    const ns = newNetns('mvx');
    const out = execPlugin(
      'macvlan',
      env('ADD', ns),
      JSON.stringify({ cniVersion: '1.0.0', name: 'x', type: 'macvlan', master: `${tag}nope` }),
    );
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining(`master: link "${tag}nope" not found`),
    });
  });
});

describe('host-device', () => {
  it('moves a veth end in (by hwaddr) and back out under its original name', (ctx) => {
    need(ctx);
    const dev = `${tag}hd0`;
    vethPair(dev, `${tag}hd1`);
    const mac = ipj<JLink[]>('link', 'show', dev)[0]?.address ?? '';
    const ns = newNetns('hd');
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}hd`,
      type: 'host-device',
      hwaddr: mac,
      dataDir: join(work, 'host-device'),
      ipam: hostLocal(`${net}.53.0/24`),
    };
    const add = execPlugin('host-device', env('ADD', ns, 'net1'), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(spawnSync('ip', ['link', 'show', dev]).status).not.toBe(0);
    const inside = ipj<JLink[]>('-n', nsName(ns), 'addr', 'show', 'net1')[0];
    expect(inside?.address).toBe(mac);
    expect(inside?.addr_info?.some((a) => a.local === `${net}.53.2`)).toBe(true);
    expect(ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'net1')[0]?.ifalias).toBe(dev);
    const check = execPlugin(
      'host-device',
      env('CHECK', ns, 'net1'),
      JSON.stringify({ ...conf, prevResult: add.json }),
    );
    expect(check.status, check.stdout).toBe(0);
    const del = execPlugin('host-device', env('DEL', ns, 'net1'), JSON.stringify(conf));
    expect(del.status, del.stdout + del.stderr).toBe(0);
    const back = ipj<JLink[]>('link', 'show', dev)[0];
    expect(back?.address).toBe(mac);
    expect(back?.flags).not.toContain('UP');
    expect(back?.ifalias ?? '').toBe('');
    expect(execPlugin('host-device', env('DEL', ns, 'net1'), JSON.stringify(conf)).status).toBe(0);
  });
});

describe('loopback', () => {
  it('brings lo up with its loopback addresses and down on DEL; DEL after the netns is gone', (ctx) => {
    need(ctx);
    const ns = newNetns('lo');
    const conf = JSON.stringify({ cniVersion: '1.1.0', name: 'lo', type: 'loopback' });
    const add = execPlugin('loopback', env('ADD', ns, 'lo'), conf);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.json).toMatchObject({
      interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: ns }],
      ips: expect.arrayContaining([{ interface: 0, address: '127.0.0.1/8' }]),
    });
    expect(ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'lo')[0]?.flags).toContain('UP');
    expect(
      execPlugin(
        'loopback',
        env('CHECK', ns, 'lo'),
        JSON.stringify({ ...JSON.parse(conf), prevResult: add.json }),
      ).status,
    ).toBe(0);
    expect(execPlugin('loopback', env('DEL', ns, 'lo'), conf).status).toBe(0);
    expect(ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'lo')[0]?.flags).not.toContain('UP');
    spawnSync('ip', ['netns', 'del', nsName(ns)]);
    expect(execPlugin('loopback', env('DEL', ns, 'lo'), conf).status).toBe(0);
  });
});

describe('tuning', () => {
  it('sets sysctls and link attributes, CHECK passes, DEL restores the originals', (ctx) => {
    need(ctx);
    const ns = newNetns('tun');
    ip('link', 'add', `${tag}tu`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsName(ns));
    hostLinks.push(`${tag}tu`);
    // allmulticast starts on, so a backup that assumed the kernel default (off) would restore wrongly.
    ip('-n', nsName(ns), 'link', 'set', 'eth0', 'allmulticast', 'on');
    const before = ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'eth0')[0];
    expect(before?.flags).toContain('ALLMULTI');
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', mac: before?.address, sandbox: ns }],
    };
    const conf = {
      cniVersion: '1.0.0',
      name: `${tag}tun`,
      type: 'tuning',
      sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': '1' },
      mtu: 1400,
      promisc: true,
      txQLen: 500,
      mac: 'c2:00:00:00:00:99',
      allmulti: false,
      dataDir: join(work, 'tuning'),
      prevResult,
    };
    const add = execPlugin('tuning', env('ADD', ns), JSON.stringify(conf));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect((add.json as typeof prevResult).interfaces[0]?.mac).toBe('c2:00:00:00:00:99');
    const l = ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'eth0')[0];
    expect(l).toMatchObject({ mtu: 1400, address: 'c2:00:00:00:00:99', txqlen: 500 });
    expect(l?.flags).toContain('PROMISC');
    expect(l?.flags).not.toContain('ALLMULTI');
    const sysctl = execFileSync(
      'ip',
      ['netns', 'exec', nsName(ns), 'cat', '/proc/sys/net/ipv4/conf/eth0/arp_filter'],
      { encoding: 'utf8' },
    );
    expect(sysctl.trim()).toBe('1');
    expect(existsSync(join(work, 'tuning', `${tag}-c_eth0.json`))).toBe(true);
    const check = execPlugin('tuning', env('CHECK', ns), JSON.stringify({ ...conf, prevResult: add.json }));
    expect(check.status, check.stdout).toBe(0);
    ip('-n', nsName(ns), 'link', 'set', 'eth0', 'allmulticast', 'on');
    const drift = execPlugin('tuning', env('CHECK', ns), JSON.stringify({ ...conf, prevResult: add.json }));
    expect(drift.json).toMatchObject({ code: 999, msg: expect.stringContaining('allmulti true != false') });
    ip('-n', nsName(ns), 'link', 'set', 'eth0', 'allmulticast', 'off');
    const del = execPlugin('tuning', env('DEL', ns), JSON.stringify(conf));
    expect(del.status, del.stdout).toBe(0);
    const after = ipj<JLink[]>('-n', nsName(ns), 'link', 'show', 'eth0')[0];
    expect(after).toMatchObject({ mtu: before?.mtu, address: before?.address, txqlen: before?.txqlen });
    expect(after?.flags).not.toContain('PROMISC');
    expect(after?.flags).toContain('ALLMULTI');
    expect(existsSync(join(work, 'tuning', `${tag}-c_eth0.json`))).toBe(false);
  });

  it('rejects a sysctl outside net. with code 7', (ctx) => {
    need(ctx);
    const out = execPlugin(
      'tuning',
      env('ADD', '/var/run/netns/none'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 't',
        type: 'tuning',
        sysctl: { 'kernel.hostname': 'x' },
        prevResult: { cniVersion: '1.0.0' },
      }),
    );
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('kernel.hostname') });
  });
});

describe('ipvlan and vlan on the real kernel', () => {
  for (const kind of ['ipvlan', 'vlan'] as const) {
    it(`${kind}: ADD, CHECK, DEL on a veth master`, async (ctx) => {
      need(ctx);
      const kinds = await linuxNetlink().supportedLinkKinds();
      if (!kinds.has(kind)) ctx.skip(`kernel has no ${kind} link type (probed with supportedLinkKinds())`);
      const master = `${tag}${kind === 'vlan' ? 'vl' : 'iv'}0`;
      vethPair(master, `${tag}${kind === 'vlan' ? 'vl' : 'iv'}1`);
      ip('link', 'set', master, 'up');
      const ns = newNetns(kind);
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}${kind}`,
        type: kind,
        master,
        vlanId: 42,
        ipam: hostLocal(`${net}.${kind === 'vlan' ? 54 : 55}.0/24`),
      };
      const add = execPlugin(kind, env('ADD', ns), JSON.stringify(conf));
      expect(add.status, add.stdout + add.stderr).toBe(0);
      const check = execPlugin(kind, env('CHECK', ns), JSON.stringify({ ...conf, prevResult: add.json }));
      expect(check.status, check.stdout).toBe(0);
      expect(execPlugin(kind, env('DEL', ns), JSON.stringify(conf)).status).toBe(0);
      expect(spawnSync('ip', ['-n', nsName(ns), 'link', 'show', 'eth0']).status).not.toBe(0);
    });
  }
});
