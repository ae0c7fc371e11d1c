// The firewall plugin binary in node network namespaces of the test's own: the exact iptables-save
// lines next to the Go plugin's (1.1.1), CHECK, DEL without prevResult or netns, real forwarded
// traffic let through and blocked (CNI-FORWARD with conntrack, and the same-bridge isolation), and
// the firewalld backend against a real firewalld on a private D-Bus (skipped, naming what is
// missing, where firewalld or dbus-daemon is not installed).
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { pluginDir } from '../helpers/mode.js';
import { TestNetnses } from '../helpers/netns.js';
import { BIN_DIR, execPluginIn } from '../helpers/plugin.js';

const tag = `fwi${process.pid % 100000}`;
const GO_FIREWALL = '/usr/lib/cni/firewall';
const net = 40 + (process.pid % 40);
const netnses = new TestNetnses();
const children: ChildProcess[] = [];
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  netnses.removeAll();
  if (work) rmSync(work, { recursive: true, force: true });
});

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (spawnSync('iptables-save', ['--version']).status !== 0) ctx.skip('iptables is not installed');
}

const netns = (suffix: string) => netnses.add(`${tag}-${suffix}`);

/** Runs a binary inside the node netns with exactly `env` and `stdin`, as a runtime there would. */
function run(node: string, bin: string, env: Record<string, string>, stdin: object) {
  const r = execPluginIn(node, bin, env, JSON.stringify(stdin), { timeout: 30_000 });
  return {
    status: r.status,
    out: `${r.stdout}${r.stderr}`,
    json: r.json as Record<string, unknown> | undefined,
  };
}

const env = (cmd: string, cid: string, netnsPath: string | undefined, path: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: cid,
  ...(netnsPath ? { CNI_NETNS: netnsPath } : {}),
  CNI_IFNAME: 'eth0',
  CNI_PATH: path,
});

/** The filter table's rules and user chains of a netns and family, counters and comments of time dropped. */
function filter(node: string, family: 4 | 6 = 4): string[] {
  const out = execFileSync(
    'ip',
    ['netns', 'exec', node, family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'filter'],
    {
      encoding: 'utf8',
    },
  );
  return out
    .split('\n')
    .filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !/^:(INPUT|FORWARD|OUTPUT) /.test(l)));
}

const fwConf = (extra: object, prevResult?: object) => ({
  cniVersion: '1.0.0',
  name: `${tag}net`,
  type: 'firewall',
  ...extra,
  ...(prevResult ? { prevResult } : {}),
});

const prevOf = (ips: string[], bridge = 'cni0') => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: bridge }, { name: 'eth0', sandbox: '/run/netns/placeholder' }],
  ips: ips.map((address) => ({ address, interface: 1 })),
});

const FWD = '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD';
const ADMIN = '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN';

describe('firewall (iptables) in a node netns', () => {
  it('writes exactly the lines the Go plugin writes, IPv4 and IPv6; CHECK; DEL without prevResult or netns', (ctx) => {
    need(ctx);
    const prev = prevOf([`10.${net}.0.5/24`, `fd00:${net}::5/64`]);
    const dataDir = join(work, 'd1');
    const ours = netns('ours1');
    const bin = `${pluginDir(ours)}firewall`;
    const add = run(
      ours,
      bin,
      env('ADD', 'c1', '/run/netns/x', BIN_DIR),
      fwConf({ backend: 'iptables', dataDir }, prev),
    );
    expect(add.status, add.out).toBe(0);
    expect(add.json).toEqual(prev);
    const want4 = [
      ':CNI-ADMIN - [0:0]',
      ':CNI-FORWARD - [0:0]',
      FWD,
      ADMIN,
      `-A CNI-FORWARD -d 10.${net}.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A CNI-FORWARD -s 10.${net}.0.5/32 -j ACCEPT`,
    ];
    const want6 = [
      ':CNI-ADMIN - [0:0]',
      ':CNI-FORWARD - [0:0]',
      FWD,
      ADMIN,
      `-A CNI-FORWARD -d fd00:${net}::5/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A CNI-FORWARD -s fd00:${net}::5/128 -j ACCEPT`,
    ];
    expect(filter(ours, 4)).toEqual(want4);
    expect(filter(ours, 6)).toEqual(want6);
    if (existsSync(GO_FIREWALL)) {
      const go = netns('go1');
      const g = run(
        go,
        GO_FIREWALL,
        env('ADD', 'c1', '/run/netns/x', '/usr/lib/cni'),
        fwConf({ backend: 'iptables' }, prev),
      );
      expect(g.status, g.out).toBe(0);
      expect(filter(go, 4)).toEqual(filter(ours, 4));
      expect(filter(go, 6)).toEqual(filter(ours, 6));
    }
    const check = () =>
      run(
        ours,
        bin,
        env('CHECK', 'c1', '/run/netns/x', BIN_DIR),
        fwConf({ backend: 'iptables', dataDir }, prev),
      );
    expect(check().status, check().out).toBe(0);
    execFileSync('ip', [
      'netns',
      'exec',
      ours,
      'ip6tables',
      '-D',
      'CNI-FORWARD',
      '-s',
      `fd00:${net}::5/128`,
      '-j',
      'ACCEPT',
    ]);
    const bad = check();
    expect(bad.status).toBe(1);
    expect(bad.json).toMatchObject({ code: 999 });
    expect(String(bad.json?.msg)).toContain(`-A CNI-FORWARD -s fd00:${net}::5/128 -j ACCEPT`);
    // The runtime lost prevResult and the netns is gone: the record still names the addresses.
    for (let i = 0; i < 2; i++) {
      const del = run(
        ours,
        bin,
        env('DEL', 'c1', undefined, BIN_DIR),
        fwConf({ backend: 'iptables', dataDir }),
      );
      expect(del.status, del.out).toBe(0);
    }
    expect(filter(ours, 4)).toEqual([':CNI-ADMIN - [0:0]', ':CNI-FORWARD - [0:0]', FWD, ADMIN]);
    expect(filter(ours, 6)).toEqual([':CNI-ADMIN - [0:0]', ':CNI-FORWARD - [0:0]', FWD, ADMIN]);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('a failed ADD (ip6tables-restore refuses) leaves the node as it found it', (ctx) => {
    need(ctx);
    // The exec'd binary finds a failing ip6tables-restore first on PATH; everything else is real.
    const fake = join(work, 'fakebin');
    mkdirSync(fake, { recursive: true });
    writeFileSync(
      join(fake, 'ip6tables-restore'),
      '#!/bin/sh\necho "ip6tables-restore: refused" >&2\nexit 1\n',
      {
        mode: 0o755,
      },
    );
    const node = netns('rb');
    const dataDir = join(work, 'd6');
    const before = [filter(node, 4), filter(node, 6)];
    const prev = prevOf([`10.${net}.6.5/24`, `fd00:${net}:6::5/64`]);
    const r = run(
      node,
      `${BIN_DIR}firewall`,
      { ...env('ADD', 'c1', '/run/netns/x', BIN_DIR), PATH: `${fake}:${process.env.PATH ?? ''}` },
      fwConf({ backend: 'iptables', ingressPolicy: 'same-bridge', dataDir }, prev),
    );
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code: 999 });
    expect(String(r.json?.msg)).toMatch(
      /^firewall: ip6tables-restore failed \(exit 1\): ip6tables-restore: refused/,
    );
    // The IPv4 half (chains created, jumps, container and isolation rules) is undone; no record stays.
    expect([filter(node, 4), filter(node, 6)]).toEqual(before);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('parallel ADDs on a fresh node make each shared chain and jump once; parallel DELs leave only those', async (ctx) => {
    need(ctx);
    const node = netns('par');
    const bin = `${pluginDir(node)}firewall`;
    const dataDir = join(work, 'd7');
    const N = 8;
    const call = (cmd: string, i: number) =>
      new Promise<number | null>((resolve) => {
        const p = spawn('nsenter', [`--net=/run/netns/${node}`, bin], {
          env: { PATH: process.env.PATH ?? '', ...env(cmd, `p${i}`, '/run/netns/x', BIN_DIR) },
          stdio: ['pipe', 'ignore', 'ignore'],
        });
        p.on('close', resolve);
        p.stdin.end(
          JSON.stringify(
            fwConf(
              { backend: 'iptables', ingressPolicy: 'same-bridge', dataDir },
              cmd === 'ADD' ? prevOf([`10.${net}.7.${10 + i}/24`, `fd00:${net}:7::${10 + i}/64`]) : undefined,
            ),
          ),
        );
      });
    const adds = await Promise.all(Array.from({ length: N }, (_, i) => call('ADD', i)));
    expect(adds).toEqual(Array(N).fill(0));
    for (const f of [4, 6] as const) {
      const l = filter(node, f);
      expect(l.filter((x) => x.startsWith('-A FORWARD '))).toHaveLength(2);
      expect(l.filter((x) => x.includes('admin overrides'))).toHaveLength(1);
      expect(l.filter((x) => x.startsWith('-A CNI-ISOLATION-STAGE-1 '))).toHaveLength(2);
      expect(l.filter((x) => x.startsWith('-A CNI-ISOLATION-STAGE-2 '))).toHaveLength(2);
      expect(l.filter((x) => /-A CNI-FORWARD -[sd] /.test(x))).toHaveLength(2 * N);
    }
    const dels = await Promise.all(Array.from({ length: N }, (_, i) => call('DEL', i)));
    expect(dels).toEqual(Array(N).fill(0));
    for (const f of [4, 6] as const)
      expect(filter(node, f).filter((x) => /-[sd] (10|fd00)/.test(x))).toEqual([]);
    expect(readdirSync(dataDir)).toEqual([]);
  }, 60_000);

  it('same-bridge: the isolation chains, recognised when the Go plugin wrote them first', (ctx) => {
    need(ctx);
    const node = netns('iso');
    const bin = `${pluginDir(node)}firewall`;
    const dataDir = join(work, 'd2');
    const c = (p: string) => `-m comment --comment "CNI firewall plugin rules (ingressPolicy: ${p})"`;
    const prev = prevOf([`10.${net}.1.5/24`], 'brx');
    const r = run(
      node,
      bin,
      env('ADD', 'c1', '/run/netns/x', BIN_DIR),
      fwConf({ backend: 'iptables', ingressPolicy: 'same-bridge', dataDir }, prev),
    );
    expect(r.status, r.out).toBe(0);
    expect(filter(node).filter((l) => l.includes('ISOLATION'))).toEqual([
      ':CNI-ISOLATION-STAGE-1 - [0:0]',
      ':CNI-ISOLATION-STAGE-2 - [0:0]',
      `-A FORWARD ${c('same-bridge|isolated')} -j CNI-ISOLATION-STAGE-1`,
      `-A CNI-ISOLATION-STAGE-1 -i brx ! -o brx ${c('same-bridge')} -j CNI-ISOLATION-STAGE-2`,
      `-A CNI-ISOLATION-STAGE-1 ${c('same-bridge|isolated')} -j RETURN`,
      `-A CNI-ISOLATION-STAGE-2 -o brx ${c('same-bridge|isolated')} -j DROP`,
      `-A CNI-ISOLATION-STAGE-2 ${c('same-bridge|isolated')} -j RETURN`,
    ]);
    // Stage 1 comes before CNI-FORWARD in FORWARD, as the reference orders them.
    expect(filter(node).filter((l) => l.startsWith('-A FORWARD '))).toEqual([
      `-A FORWARD ${c('same-bridge|isolated')} -j CNI-ISOLATION-STAGE-1`,
      FWD,
    ]);
    if (!existsSync(GO_FIREWALL)) return;
    // Go 1.1.1 first (its older comment on every isolation rule), then ours: nothing doubled.
    const go = netns('isogo');
    const prevGo = prevOf([`10.${net}.1.6/24`], 'brx');
    const g = run(
      go,
      GO_FIREWALL,
      env('ADD', 'c0', '/run/netns/x', '/usr/lib/cni'),
      fwConf({ backend: 'iptables', ingressPolicy: 'same-bridge' }, prevGo),
    );
    expect(g.status, g.out).toBe(0);
    const before = filter(go).filter((l) => l.includes('ISOLATION'));
    const o = run(
      go,
      `${pluginDir(go)}firewall`,
      env('ADD', 'c1', '/run/netns/x', BIN_DIR),
      fwConf({ backend: 'iptables', ingressPolicy: 'same-bridge', dataDir: join(work, 'd3') }, prev),
    );
    expect(o.status, o.out).toBe(0);
    expect(filter(go).filter((l) => l.includes('ISOLATION'))).toEqual(before);
    const chk = run(
      go,
      `${pluginDir(go)}firewall`,
      env('CHECK', 'c1', '/run/netns/x', BIN_DIR),
      fwConf({ backend: 'iptables', ingressPolicy: 'same-bridge', dataDir: join(work, 'd3') }, prev),
    );
    expect(chk.status, chk.out).toBe(0);
  });
});

/** One echo request from `from` (a container netns) to `to`, 2 s for the answer; ping's output. */
function ping(from: string, to: string): { ok: boolean; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', from, 'ping', '-c', '1', '-W', '2', to], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}
/**
 * `from` reaches `to`: up to PING_TRIES pings, since the first one can be lost while ARP resolves or
 * a bridge port's carrier event is still in the kernel's queue; fails with what every try printed.
 */
const PING_TRIES = 3;
function expectReach(from: string, to: string): void {
  const seen: string[] = [];
  for (let i = 0; i < PING_TRIES; i++) {
    const r = ping(from, to);
    if (r.ok) return;
    seen.push(r.out);
  }
  expect.fail(`${from} -> ${to}: no answer in ${PING_TRIES} pings:\n${seen.join('\n---\n')}`);
}
/** `from` does not reach `to` (one ping: an answer is a failure, a retry would not change that). */
function expectNoReach(from: string, to: string): void {
  const r = ping(from, to);
  expect(r.ok, `${from} -> ${to} got an answer:\n${r.out}`).toBe(false);
}

describe('firewall: real forwarded traffic through a node with our bridge', () => {
  it('CNI-FORWARD lets the container out and its replies in, nothing new in; same-bridge blocks the other bridge', (ctx) => {
    need(ctx);
    if (spawnSync('ping', ['-V']).status !== 0)
      ctx.skip('ping is not installed (Debian package iputils-ping)');
    const node = netns('tr');
    const dir = pluginDir(node);
    const ctrs = { a: netns('tra'), b: netns('trb') };
    const dataDir = join(work, 'd4');
    const results: Record<string, object> = {};
    for (const [k, i] of [
      ['a', 1],
      ['b', 2],
    ] as const) {
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}${k}`,
        type: 'bridge',
        bridge: `${tag}${k}`,
        isDefaultGateway: true,
        ipam: { type: 'host-local', subnet: `10.${net}.${10 + i}.0/24`, dataDir: join(work, 'ipam') },
      };
      const r = run(node, `${dir}bridge`, env('ADD', `${tag}${k}`, `/run/netns/${ctrs[k]}`, dir), conf);
      expect(r.status, r.out).toBe(0);
      results[k] = r.json ?? {};
    }
    const ipOf = (k: 'a' | 'b') =>
      ((results[k] as { ips: Array<{ address: string }> }).ips[0]?.address ?? '').split('/')[0] ?? '';
    const fw = (cmd: string, k: 'a' | 'b', extra: object = {}) =>
      run(
        node,
        `${dir}firewall`,
        env(cmd, `${tag}${k}`, `/run/netns/${ctrs[k]}`, dir),
        fwConf(
          { backend: 'iptables', dataDir, ...extra },
          cmd === 'DEL' ? undefined : { ...results[k], cniVersion: '1.0.0' },
        ),
      );
    const A = ipOf('a');
    const B = ipOf('b');
    // With FORWARD's policy open the bridges route between each other.
    expectReach(ctrs.a, B);
    execFileSync('ip', ['netns', 'exec', node, 'iptables', '-P', 'FORWARD', 'DROP']);
    expectNoReach(ctrs.a, B);
    const add = fw('ADD', 'a');
    expect(add.status, add.out).toBe(0);
    // a's traffic out is accepted and so are the replies (conntrack); b cannot open anything to a.
    expectReach(ctrs.a, B);
    expectNoReach(ctrs.b, A);
    expect(fw('DEL', 'a').status).toBe(0);
    expectNoReach(ctrs.a, B);
    // same-bridge: with FORWARD open again, a's bridge no longer reaches b's.
    execFileSync('ip', ['netns', 'exec', node, 'iptables', '-P', 'FORWARD', 'ACCEPT']);
    expectReach(ctrs.a, B);
    for (const k of ['a', 'b'] as const)
      expect(fw('ADD', k, { ingressPolicy: 'same-bridge' }).status).toBe(0);
    expectNoReach(ctrs.a, B);
    expectNoReach(ctrs.b, A);
    for (const k of ['a', 'b'] as const) {
      expect(fw('DEL', k).status).toBe(0);
      const conf = {
        cniVersion: '1.0.0',
        name: `${tag}${k}`,
        type: 'bridge',
        bridge: `${tag}${k}`,
        ipam: {
          type: 'host-local',
          subnet: `10.${net}.${k === 'a' ? 11 : 12}.0/24`,
          dataDir: join(work, 'ipam'),
        },
      };
      expect(
        run(node, `${dir}bridge`, env('DEL', `${tag}${k}`, `/run/netns/${ctrs[k]}`, dir), conf).status,
      ).toBe(0);
    }
    expect(filter(node).filter((l) => /-[sd] 10\./.test(l))).toEqual([]);
  }, 90_000);
});

/** What the real-firewalld test needs that is missing, or undefined. */
function firewalldMissing(): string | undefined {
  const why: string[] = [];
  if (spawnSync('sh', ['-c', 'command -v firewalld']).status !== 0)
    why.push('firewalld is not installed (Debian package firewalld)');
  if (spawnSync('sh', ['-c', 'command -v dbus-daemon']).status !== 0)
    why.push('dbus-daemon is not installed (Debian package dbus-daemon)');
  if (spawnSync('sh', ['-c', 'command -v busctl']).status !== 0)
    why.push('busctl is not installed (Debian package systemd)');
  if (!existsSync('/etc/firewalld')) why.push('/etc/firewalld is missing (Debian package firewalld)');
  return why.length ? why.join('; ') : undefined;
}

/** A private system bus and a firewalld on it, inside `node` (its own mount namespace, /run on tmpfs). */
async function startFirewalld(node: string): Promise<string> {
  const dir = join(work, 'fwd');
  mkdirSync(dir, { recursive: true });
  // A config copy of its own: firewalld writes its permanent config there, never to /etc.
  cpSync('/etc/firewalld', join(dir, 'etc'), { recursive: true });
  const sock = join(dir, 'bus');
  writeFileSync(
    join(dir, 'bus.conf'),
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=${sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>`,
  );
  const address = `unix:path=${sock}`;
  children.push(
    spawn('dbus-daemon', [`--config-file=${join(dir, 'bus.conf')}`, '--nofork', '--nopidfile'], {
      stdio: 'ignore',
    }),
  );
  const log: string[] = [];
  const fwd = spawn(
    'ip',
    [
      'netns',
      'exec',
      node,
      'unshare',
      '-m',
      'sh',
      '-c',
      `mount -t tmpfs none /run && exec firewalld --nofork --nopid --system-config ${join(dir, 'etc')} --log-target console`,
    ],
    { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  fwd.stdout?.on('data', (b: Buffer) => log.push(b.toString()));
  fwd.stderr?.on('data', (b: Buffer) => log.push(b.toString()));
  children.push(fwd);
  const end = Date.now() + 40_000;
  for (;;) {
    const r = spawnSync('busctl', [
      `--address=${address}`,
      'call',
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'GetNameOwner',
      's',
      'org.fedoraproject.FirewallD1',
    ]);
    // The name is taken early; the zone interface answers once the start-up is done.
    if (r.status === 0) {
      const z = spawnSync('busctl', [
        `--address=${address}`,
        'call',
        'org.fedoraproject.FirewallD1',
        '/org/fedoraproject/FirewallD1',
        'org.fedoraproject.FirewallD1.zone',
        'getActiveZones',
      ]);
      if (z.status === 0) return address;
    }
    if (Date.now() > end || fwd.exitCode !== null)
      throw new Error(`firewalld did not come up: ${log.join('')}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

describe('firewall: firewalld backend against a real firewalld on a private bus', () => {
  it('ADD puts the addresses in the zone (auto-detected backend), CHECK, DEL; Go ADD + our DEL', async (ctx) => {
    need(ctx);
    const missing = firewalldMissing();
    if (missing) ctx.skip(missing);
    const node = netns('fwd');
    const address = await startFirewalld(node);
    const zoneOf = (src: string) =>
      spawnSync(
        'busctl',
        [
          `--address=${address}`,
          'call',
          'org.fedoraproject.FirewallD1',
          '/org/fedoraproject/FirewallD1',
          'org.fedoraproject.FirewallD1.zone',
          'getZoneOfSource',
          's',
          src,
        ],
        { encoding: 'utf8' },
      ).stdout.trim();
    const dataDir = join(work, 'd5');
    const prev = prevOf([`10.${net}.5.5/24`, `fd00:${net}:5::5/64`]);
    // The bus address is the call's environment (in daemon mode too, where the daemon's is not).
    const e = (cmd: string, cid = 'c1') => ({
      ...env(cmd, cid, '/run/netns/x', BIN_DIR),
      DBUS_SYSTEM_BUS_ADDRESS: address,
    });
    const bin = `${pluginDir(node)}firewall`;
    const add = run(node, bin, e('ADD'), fwConf({ dataDir }, prev));
    expect(add.status, add.out).toBe(0);
    expect(zoneOf(`10.${net}.5.5/32`)).toBe('s "trusted"');
    expect(zoneOf(`fd00:${net}:5::5/128`)).toBe('s "trusted"');
    // The iptables backend was not used.
    expect(filter(node).filter((l) => l.includes('CNI-FORWARD'))).toEqual([]);
    expect(run(node, bin, e('CHECK'), fwConf({ dataDir }, prev)).status).toBe(0);
    spawnSync('busctl', [
      `--address=${address}`,
      'call',
      'org.fedoraproject.FirewallD1',
      '/org/fedoraproject/FirewallD1',
      'org.fedoraproject.FirewallD1.zone',
      'removeSource',
      'ss',
      'trusted',
      `fd00:${net}:5::5/128`,
    ]);
    const bad = run(node, bin, e('CHECK'), fwConf({ dataDir }, prev));
    expect(bad.json).toMatchObject({
      code: 999,
      msg: `CHECK: firewalld zone trusted does not hold the source fd00:${net}:5::5/128`,
    });
    for (let i = 0; i < 2; i++)
      expect(run(node, bin, { ...e('DEL'), CNI_NETNS: '' }, fwConf({ dataDir })).status).toBe(0);
    expect(zoneOf(`10.${net}.5.5/32`)).toBe('s ""');
    // A zone firewalld does not know: code 7 naming the field, and nothing is left.
    const unknown = run(node, bin, e('ADD', 'c4'), fwConf({ dataDir, firewalldZone: 'nosuchzone' }, prev));
    expect(unknown.json).toMatchObject({ code: 7 });
    expect(String(unknown.json?.msg)).toMatch(/^firewalldZone: "nosuchzone" is not a zone firewalld knows/);
    expect(zoneOf(`10.${net}.5.5/32`)).toBe('s ""');
    expect(readdirSync(dataDir)).toEqual([]);
    // A zone of the config's own; then the Go plugin's ADD, removed by our DEL (prevResult given).
    const z = run(node, bin, e('ADD', 'c2'), fwConf({ dataDir, firewalldZone: 'internal' }, prev));
    expect(z.status, z.out).toBe(0);
    expect(zoneOf(`10.${net}.5.5/32`)).toBe('s "internal"');
    expect(run(node, bin, e('DEL', 'c2'), fwConf({ dataDir, firewalldZone: 'internal' }, prev)).status).toBe(
      0,
    );
    if (existsSync(GO_FIREWALL)) {
      const g = run(node, GO_FIREWALL, { ...e('ADD', 'c3'), CNI_PATH: '/usr/lib/cni' }, fwConf({}, prev));
      expect(g.status, g.out).toBe(0);
      expect(zoneOf(`10.${net}.5.5/32`)).toBe('s "trusted"');
      expect(run(node, bin, e('DEL', 'c3'), fwConf({ dataDir }, prev)).status).toBe(0);
      expect(zoneOf(`10.${net}.5.5/32`)).toBe('s ""');
      expect(zoneOf(`fd00:${net}:5::5/128`)).toBe('s ""');
    }
    expect(readdirSync(dataDir)).toEqual([]);
  }, 90_000);
});
