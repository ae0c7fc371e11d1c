// portmap for real, in a node netns of the test's own: our bridge gives a container IPv4 and IPv6
// addresses, our portmap maps host ports, and real TCP and UDP requests reach an echo server in the
// container from a client netns (DNAT), from the node itself over 127.0.0.1 (localhost SNAT with
// route_localnet) and from the container to itself (hairpin SNAT), with both backends. CHECK
// notices a removed rule, a repeated ADD repairs it, DEL removes everything of the container, and
// a failed ADD leaves no rule; a UDP flow conntrack saw before ADD reaches the container after it;
// concurrent ADDs on a fresh node keep every jump.
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR } from '../helpers/plugin.js';
import {
  CLIENT_IP,
  execInNode,
  inNs,
  NODE_IP,
  PortmapWorld,
  worldMissing,
} from '../helpers/portmap-world.js';

const tag = `pmi${process.pid % 100000}`;
let w: PortmapWorld;
let ctr: string;
let prevResult: Record<string, unknown>;
const TCP = 80;
const UDP = 81;
const CID = `${tag}-ctr`;

const env = (cmd: string, cid = CID) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: cid,
  CNI_NETNS: `/var/run/netns/${ctr}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: BIN_DIR,
});

const skipWhy = worldMissing();
function need(ctx: TestContext, backend?: string): void {
  if (skipWhy) ctx.skip(skipWhy);
  if (backend === 'nftables' && inNsOk('nft', '--version') === false) ctx.skip('nft not installed');
}
const inNsOk = (...cmd: string[]) => {
  try {
    inNs(w.node, cmd[0] ?? '', ...cmd.slice(1));
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  if (skipWhy) return;
  w = new PortmapWorld(tag);
  ctr = w.netns('c1');
  const bridge = {
    cniVersion: '1.1.0',
    name: `${tag}net`,
    type: 'bridge',
    bridge: `${tag}br`,
    isDefaultGateway: true,
    hairpinMode: true,
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: '10.66.0.0/24' }], [{ subnet: 'fd66::/64' }]],
      dataDir: `${w.work}/ipam`,
    },
  };
  const r = execInNode(w.node, `${pluginDir(w.node)}bridge`, env('ADD'), bridge);
  if (r.status !== 0) throw new Error(`bridge ADD failed: ${r.stdout}${r.stderr}`);
  prevResult = r.json ?? {};
  await w.server(ctr, TCP, UDP);
}, 60_000);
afterAll(() => w?.close());

const mappings = (base: number) => [
  { hostPort: base, containerPort: TCP, protocol: 'tcp' },
  { hostPort: base + 1, containerPort: UDP, protocol: 'udp' },
];
const conf = (backend: string, base: number, extra: object = {}) => ({
  cniVersion: '1.1.0',
  name: `${tag}net`,
  type: 'portmap',
  backend,
  runtimeConfig: { portMappings: mappings(base) },
  prevResult,
  ...extra,
});
const pm = (cmd: string, c: object) => execInNode(w.node, `${pluginDir(w.node)}portmap`, env(cmd), c);

/** What of this container is left in the node's firewall: its chain, comments and addresses. */
const traces = () =>
  w
    .firewall()
    .split('\n')
    .filter((l) => /CNI-DN-|10\.66\.0\.|fd66::/.test(l) || l.includes(CID));

describe.each(['iptables', 'nftables'] as const)('%s backend', (backend) => {
  const base = backend === 'iptables' ? 18080 : 19080;

  it('TCP and UDP over IPv4 and IPv6 reach the container; localhost and hairpin are masqueraded', async (ctx) => {
    need(ctx, backend);
    const c = conf(backend, base);
    const add = pm('ADD', c);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.json).toEqual(prevResult);
    for (const fam of [4, 6] as const) {
      expect(w.askUntil(w.client, 'tcp', NODE_IP[fam], base)).toBe(`ok ${CLIENT_IP[fam]}`);
      expect(w.askUntil(w.client, 'udp', NODE_IP[fam], base + 1)).toBe(`ok ${CLIENT_IP[fam]}`);
    }
    // From the node itself: to its own address (OUTPUT), and to 127.0.0.1 (masqueraded to the bridge's address).
    expect(w.askUntil(w.node, 'tcp', NODE_IP[4], base)).toMatch(/^ok /);
    expect(w.askUntil(w.node, 'tcp', '127.0.0.1', base)).toBe('ok 10.66.0.1');
    expect(inNs(w.node, 'sysctl', '-n', `net.ipv4.conf.${tag}br.route_localnet`).trim()).toBe('1');
    // Hairpin: the container reaches itself through the host port, masqueraded.
    expect(w.askUntil(ctr, 'tcp', NODE_IP[4], base)).toBe('ok 10.66.0.1');
    expect(w.askUntil(ctr, 'tcp', NODE_IP[6], base)).toBe('ok fd66::1');
    expect(pm('CHECK', c).status).toBe(0);

    const del = pm('DEL', { ...c, prevResult: undefined });
    expect(del.status, del.stdout).toBe(0);
    expect(traces()).toEqual([]);
    expect(w.ask(w.client, 'tcp', NODE_IP[4], base)).not.toMatch(/^ok/);
    expect(pm('DEL', c).status).toBe(0);
  }, 60_000);

  it('CHECK notices a removed rule; a repeated ADD restores it without duplicates', async (ctx) => {
    need(ctx, backend);
    const c = conf(backend, base + 10);
    expect(pm('ADD', c).status).toBe(0);
    const before = w.firewall();
    if (backend === 'iptables') {
      const chain = /:(CNI-DN-[0-9a-f]+) /.exec(inNs(w.node, 'iptables-save', '-t', 'nat'))?.[1] ?? '';
      inNs(w.node, 'iptables', '-t', 'nat', '-F', chain);
    } else inNs(w.node, 'nft', 'flush', 'chain', 'ip', 'cni_hostport', 'hostports');
    const check = pm('CHECK', c);
    expect(check.status).not.toBe(0);
    expect(check.json).toMatchObject({ code: 999, msg: expect.stringMatching(/^CHECK: /) });
    expect(pm('ADD', c).status).toBe(0);
    expect(pm('CHECK', c).status).toBe(0);
    expect(pm('ADD', c).status).toBe(0);
    const norm = (t: string) =>
      t
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n')
        .replace(/handle \d+|packets \d+ bytes \d+|\[\d+:\d+\]/g, '');
    expect(norm(w.firewall())).toBe(norm(before));
    expect(w.askUntil(w.client, 'tcp', NODE_IP[4], base + 10)).toBe(`ok ${CLIENT_IP[4]}`);
    expect(pm('DEL', c).status).toBe(0);
    expect(traces()).toEqual([]);
  }, 60_000);

  it('UDP: a flow that hit the host port before ADD reaches the container after it (conntrack flushed)', async (ctx) => {
    need(ctx, backend);
    if (!inNsOk('conntrack', '--version')) ctx.skip('conntrack (the conntrack tool) not installed');
    const port = base + 31;
    const from = 40000 + (process.pid % 1000) + (backend === 'iptables' ? 0 : 1000);
    // Conntrack tracks a netns's flows only once a rule there needs it (on a real node, always).
    const ct =
      'table ip pmct {\n chain pre {\n  type filter hook prerouting priority 0\n  ct state new counter\n }\n}\n';
    expect(spawnSync('ip', ['netns', 'exec', w.node, 'nft', '-f', '-'], { input: ct }).status).toBe(0);
    // No mapping yet: the datagram reaches the node's closed port and conntrack remembers the flow.
    expect(w.ask(w.client, 'udp', NODE_IP[4], port, from)).toBe('timeout');
    const c = conf(backend, 0, {
      runtimeConfig: { portMappings: [{ hostPort: port, containerPort: UDP, protocol: 'udp' }] },
    });
    const add = pm('ADD', c);
    expect(add.status, add.stdout).toBe(0);
    expect(add.stderr).not.toContain('conntrack is not installed');
    // Retried from the same source port: a stale conntrack entry would catch every retry as well.
    expect(w.askUntil(w.client, 'udp', NODE_IP[4], port, { from })).toBe(`ok ${CLIENT_IP[4]}`);
    spawnSync('ip', ['netns', 'exec', w.node, 'nft', 'delete', 'table', 'ip', 'pmct']);
    expect(pm('DEL', c).status).toBe(0);
    expect(traces()).toEqual([]);
  }, 60_000);

  it('a failed ADD (bad IPv6 conditions) leaves no rule of the container, IPv4 ones included', async (ctx) => {
    need(ctx, backend);
    const bad = backend === 'iptables' ? ['-m', 'no-such-match'] : ['meta', 'no-such-key', '1'];
    const add = pm('ADD', conf(backend, base + 20, { conditionsV6: bad }));
    expect(add.status).not.toBe(0);
    expect(add.json).toMatchObject({ code: 999 });
    expect(add.stdout).not.toMatch(/\n\s+at /);
    expect(traces()).toEqual([]);
  }, 60_000);
});

it('errors name the field and the fix: hostPort 0, a missing prevResult', (ctx) => {
  need(ctx);
  const zero = pm('ADD', {
    ...conf('iptables', 1),
    runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] },
  });
  expect(zero.status).not.toBe(0);
  expect(zero.json).toMatchObject({
    code: 7,
    msg: expect.stringContaining(
      'runtimeConfig.portMappings[0].hostPort: 0 must be an integer from 1 to 65535',
    ),
  });
  const noPrev = pm('ADD', { ...conf('iptables', 1), prevResult: undefined });
  expect(noPrev.json).toMatchObject({ code: 7, msg: expect.stringMatching(/^prevResult: missing/) });
  expect(traces()).toEqual([]);
});

it('concurrent ADDs on a node without the shared chains: every jump stays, no shared rule twice', async (ctx) => {
  need(ctx);
  const node = w.netns('par');
  const one = (cmd: string, i: number) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('ip', ['netns', 'exec', node, `${pluginDir(node)}portmap`], {
        env: { PATH: process.env.PATH ?? '', ...env(cmd, `${tag}-par${i}`) },
      });
      let out = '';
      p.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      p.on('close', (code) => resolve({ code, out }));
      p.stdin.end(
        JSON.stringify({
          ...conf('iptables', 0),
          runtimeConfig: { portMappings: [{ hostPort: 9100 + i, containerPort: 80, protocol: 'tcp' }] },
          prevResult: {
            cniVersion: '1.1.0',
            interfaces: [{ name: 'eth0', sandbox: `/var/run/netns/${ctr}` }],
            ips: [{ address: `10.70.0.${10 + i}/24`, interface: 0 }],
          },
        }),
      );
    });
  const n = [...Array(8).keys()];
  const adds = await Promise.all(n.map((i) => one('ADD', i)));
  expect(adds.filter((r) => r.code !== 0)).toEqual([]);
  const save = inNs(node, 'iptables-save', '-t', 'nat').split('\n');
  expect(save.filter((l) => l.startsWith('-A CNI-HOSTPORT-DNAT ')).length).toBe(8);
  for (const shared of [
    /^-A PREROUTING .*-j CNI-HOSTPORT-DNAT$/,
    /^-A OUTPUT .*-j CNI-HOSTPORT-DNAT$/,
    /^-A POSTROUTING .*-j CNI-HOSTPORT-MASQ$/,
    /^-A CNI-HOSTPORT-MASQ /,
    /^-A CNI-HOSTPORT-SETMARK /,
  ])
    expect(save.filter((l) => shared.test(l))).toHaveLength(1);
  const dels = await Promise.all(n.map((i) => one('DEL', i)));
  expect(dels.filter((r) => r.code !== 0)).toEqual([]);
  expect(inNs(node, 'iptables-save', '-t', 'nat')).not.toMatch(/CNI-DN-/);
}, 60_000);
