// The bridge and macvlan fields that used to be accepted and ignored, read back from the kernel
// after our binaries ran (portIsolation, disableContainerInterface, enabledad, ipMasqBackend,
// bcqueuelen, mode source), plus F12 (a veth named as the bridge is refused before it is touched)
// and F15 (CNI_IFNAME=lo: DEL leaves lo alone). Everything runs under a node netns of the test's own.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `pbf${process.pid % 100000}`;
const netnses: string[] = [];
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
let seq = 0;
afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  rmSync(work, { recursive: true, force: true });
});

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

function netns(): string {
  const name = `${tag}-${seq++}`;
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return name;
}

interface IpLink {
  ifname: string;
  flags: string[];
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_data?: Record<string, unknown>;
  };
}
const link = (ns: string, name: string): IpLink | undefined =>
  (
    JSON.parse(execFileSync('ip', ['-n', ns, '-d', '-j', 'link', 'show'], { encoding: 'utf8' })) as IpLink[]
  ).find((l) => l.ifname === name);
const names = (ns: string) =>
  (JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show'], { encoding: 'utf8' })) as IpLink[])
    .map((l) => l.ifname)
    .sort();
const sysctl = (ns: string, key: string) =>
  execFileSync('nsenter', [`--net=/run/netns/${ns}`, 'cat', `/proc/sys/${key}`], { encoding: 'utf8' }).trim();

/** A node netns, a container netns, and a runner for our binaries in the node. */
function setup(type: string, extra: Record<string, unknown>, ipam: Record<string, unknown> | null = {}) {
  const node = netns();
  const ctr = netns();
  const dataDir = join(work, `ipam-${seq}`);
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: `${tag}net`,
    type,
    ...extra,
    ...(ipam ? { ipam: { type: 'host-local', subnet: '10.95.0.0/24', dataDir, ...ipam } } : {}),
  });
  const bin = pluginDir(node);
  const call = (cmd: string, ifname = 'eth0', stdin = conf) => {
    const r = spawnSync('nsenter', [`--net=/run/netns/${node}`, join(bin, type)], {
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: `${tag}c`,
        CNI_NETNS: `/var/run/netns/${ctr}`,
        CNI_IFNAME: ifname,
        CNI_PATH: bin,
      },
      input: stdin,
      encoding: 'utf8',
      timeout: 20_000,
    });
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(r.stdout);
    } catch {}
    return { status: r.status, out: `${r.stdout}${r.stderr}`, json };
  };
  const held = () => {
    const pool = join(dataDir, `${tag}net`);
    return existsSync(pool) ? readdirSync(pool).filter((f) => /^\d/.test(f)) : [];
  };
  return { node, ctr, conf, call, held };
}

describe('bridge fields on the real kernel', () => {
  it('portIsolation sets IFLA_BRPORT_ISOLATED on the host veth; DEL removes it', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'fbr0', portIsolation: true });
    const add = s.call('ADD');
    expect(add.status, add.out).toBe(0);
    const hostVeth = (add.json.interfaces as Array<{ name: string }>)[1]!.name;
    expect(link(s.node, hostVeth)?.linkinfo?.info_slave_data?.isolated).toBe(true);
    expect(s.call('DEL').status).toBe(0);
    expect(link(s.node, hostVeth)).toBeUndefined();
  });

  it('disableContainerInterface leaves the container interface DOWN (L2 only)', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'fbr0', disableContainerInterface: true }, null);
    const add = s.call('ADD');
    expect(add.status, add.out).toBe(0);
    expect(link(s.ctr, 'eth0')?.flags).not.toContain('UP');
    expect(s.call('DEL').status).toBe(0);
    expect(names(s.ctr)).toEqual(['lo']);
  });

  it('disableContainerInterface with ipam is refused (code 7), nothing created', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'fbr0', disableContainerInterface: true });
    const add = s.call('ADD');
    expect(add.status).toBe(1);
    expect(add.json.code).toBe(7);
    expect(names(s.node)).toEqual(['lo']);
    expect(names(s.ctr)).toEqual(['lo']);
    expect(s.held()).toEqual([]);
  });

  it('enabledad turns (enhanced) DAD on for the container interface; off without it', (ctx) => {
    need(ctx);
    for (const [enabledad, want] of [
      [true, '1'],
      [false, '0'],
    ] as const) {
      const s = setup('bridge', { bridge: 'fbr0', enabledad }, { subnet: 'fd95::/64' });
      // DAD off by default in this netns: enabledad must switch it on itself.
      execFileSync('nsenter', [
        `--net=/run/netns/${s.ctr}`,
        'sysctl',
        '-qw',
        'net.ipv6.conf.default.accept_dad=0',
      ]);
      const add = s.call('ADD');
      expect(add.status, add.out).toBe(0);
      expect(sysctl(s.ctr, 'net/ipv6/conf/eth0/accept_dad'), `enabledad ${enabledad}`).toBe(want);
      if (enabledad) expect(sysctl(s.ctr, 'net/ipv6/conf/eth0/enhanced_dad')).toBe('1');
      expect(s.call('DEL').status).toBe(0);
    }
  });

  it('ipMasqBackend nftables: real rules where nft runs, else refused with code 7 and nothing left', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'fbr0', isGateway: true, ipMasq: true, ipMasqBackend: 'nftables' });
    const add = s.call('ADD');
    if (spawnSync('nft', ['--version']).status !== 0) {
      expect(add.status).toBe(1);
      expect(add.json.code).toBe(7);
      expect(add.json.msg).toContain('ipMasqBackend: "nftables" needs the nft command');
      expect(names(s.node)).toEqual(['lo']);
      expect(names(s.ctr)).toEqual(['lo']);
      expect(s.held()).toEqual([]);
      expect(s.call('DEL').status).toBe(0);
      return;
    }
    expect(add.status, add.out).toBe(0);
    const table = () =>
      spawnSync(
        'nsenter',
        [`--net=/run/netns/${s.node}`, 'nft', 'list', 'table', 'inet', 'cni_plugins_masquerade'],
        {
          encoding: 'utf8',
        },
      ).stdout;
    expect(table()).toMatch(/ip saddr 10\.95\.0\.2 ip daddr != 10\.95\.0\.0\/24 masquerade/);
    expect(s.call('DEL').status).toBe(0);
    expect(table()).not.toContain('masquerade comment');
  });

  it('F12: a veth named as the bridge is refused (code 7) and stays DOWN', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'vx0' });
    execFileSync('ip', ['-n', s.node, 'link', 'add', 'vx0', 'type', 'veth', 'peer', 'name', 'vx1']);
    const add = s.call('ADD');
    expect(add.status).toBe(1);
    expect(add.json.code).toBe(7);
    expect(add.json.msg).toContain('bridge: "vx0" exists but is a veth link');
    expect(link(s.node, 'vx0')?.flags).not.toContain('UP');
    expect(names(s.node)).toEqual(['lo', 'vx0', 'vx1']);
    expect(names(s.ctr)).toEqual(['lo']);
  });

  it('F15: CNI_IFNAME=lo is refused by ADD and DEL leaves lo alone', (ctx) => {
    need(ctx);
    const s = setup('bridge', { bridge: 'fbr0' });
    expect(s.call('ADD', 'lo').status).toBe(1);
    const del = s.call('DEL', 'lo');
    expect(del.status, del.out).toBe(0);
    expect(names(s.ctr)).toEqual(['lo']);
    expect(s.held()).toEqual([]);
  });
});

describe('macvlan fields on the real kernel', () => {
  const master = (node: string) => {
    execFileSync('ip', ['-n', node, 'link', 'add', 'mst0', 'type', 'veth', 'peer', 'name', 'mst1']);
    execFileSync('ip', ['-n', node, 'link', 'set', 'mst0', 'up']);
  };

  it('bcqueuelen is the macvlan broadcast queue length; CHECK holds it', (ctx) => {
    need(ctx);
    const s = setup('macvlan', { master: 'mst0', bcqueuelen: 321 });
    master(s.node);
    const add = s.call('ADD');
    expect(add.status, add.out).toBe(0);
    expect(link(s.ctr, 'eth0')?.linkinfo?.info_data?.bcqueuelen).toBe(321);
    const check = s.call('CHECK', 'eth0', JSON.stringify({ ...JSON.parse(s.conf), prevResult: add.json }));
    expect(check.status, check.out).toBe(0);
    expect(s.call('DEL').status).toBe(0);
    expect(names(s.ctr)).toEqual(['lo']);
  });

  it('mode source is refused with code 7 naming it; nothing created', (ctx) => {
    need(ctx);
    const s = setup('macvlan', { master: 'mst0', mode: 'source' });
    master(s.node);
    const add = s.call('ADD');
    expect(add.status).toBe(1);
    expect(add.json.code).toBe(7);
    expect(add.json.msg).toContain('mode: "source"');
    expect(names(s.ctr)).toEqual(['lo']);
    expect(s.held()).toEqual([]);
    expect(s.call('DEL').status).toBe(0);
  });

  it('F15: CNI_IFNAME=lo is refused by ADD and DEL leaves lo alone', (ctx) => {
    need(ctx);
    const s = setup('macvlan', { master: 'mst0' });
    master(s.node);
    expect(s.call('ADD', 'lo').status).toBe(1);
    const del = s.call('DEL', 'lo');
    expect(del.status, del.out).toBe(0);
    expect(names(s.ctr)).toEqual(['lo']);
    expect(s.held()).toEqual([]);
  });
});
