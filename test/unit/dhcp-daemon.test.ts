// The dhcp daemon over its real Unix socket with a simulated host and server, the plugin run
// in-process (runPlugin), and the option/route rules of a lease.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { callDhcpDaemon, type DhcpCall, type DhcpDaemon, startDhcpDaemon } from 'cni-kit/ipam';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDhcpPlugin } from '../../examples/dhcp/plugin.js';
import { parseDuration } from '../../src/cli/dhcp-daemon.js';
import {
  classlessRoutes,
  clientId,
  leaseAddress,
  leaseRoutes,
  maskPrefix,
} from '../../src/ipam/dhcp/options.js';
import { BOOTREPLY, type DhcpMessage, ip4, MessageType } from '../../src/ipam/dhcp/packet.js';
import { SimClock, SimNet, SimServer } from '../helpers/dhcp-sim.js';

const ack = (opts: Array<[number, number[]]>, yiaddr = '10.1.2.3'): DhcpMessage => ({
  op: BOOTREPLY,
  xid: 1,
  secs: 0,
  broadcast: false,
  ciaddr: 0,
  yiaddr: ip4(yiaddr),
  siaddr: 0,
  giaddr: 0,
  chaddr: new Uint8Array(6),
  options: new Map(opts.map(([k, v]) => [k, Uint8Array.from(v)])),
});

describe('dhcp options → result', () => {
  it('address with prefix from the mask, gateway from the first router', () => {
    expect(
      leaseAddress(
        ack([
          [1, [255, 255, 240, 0]],
          [3, [10, 1, 0, 1, 10, 1, 0, 2]],
        ]),
      ),
    ).toEqual({
      address: '10.1.2.3/20',
      gateway: '10.1.0.1',
    });
    expect(leaseAddress(ack([[1, [255, 255, 255, 0]]]))).toEqual({ address: '10.1.2.3/24' });
  });

  it('no or a non-contiguous mask is an error naming option 1', () => {
    expect(() => leaseAddress(ack([]))).toThrow(/no subnet mask \(option 1\)/);
    expect(() => leaseAddress(ack([[1, [255, 0, 255, 0]]]))).toThrow(/non-contiguous/);
    expect(maskPrefix(0)).toBe(0);
    expect(maskPrefix(0xffffffff)).toBe(32);
  });

  it('option 33 routes are classful, then the default route via the router; priority sets metrics', () => {
    const m = ack([
      [3, [10, 1, 0, 1]],
      [33, [10, 9, 0, 0, 10, 1, 0, 254, 172, 16, 5, 0, 10, 1, 0, 253, 192, 168, 7, 0, 10, 1, 0, 252]],
    ]);
    expect(leaseRoutes(m, 0)).toEqual([
      { dst: '10.0.0.0/8', gw: '10.1.0.254' },
      { dst: '172.16.0.0/16', gw: '10.1.0.253' },
      { dst: '192.168.7.0/24', gw: '10.1.0.252' },
      { dst: '0.0.0.0/0', gw: '10.1.0.1' },
    ]);
    expect(leaseRoutes(m, 7).every((r) => r.priority === 7)).toBe(true);
  });

  it('option 121 replaces option 33 and the router; a 0.0.0.0 router is an on-link route', () => {
    const m = ack([
      [3, [10, 1, 0, 1]],
      [33, [10, 9, 0, 0, 10, 1, 0, 254]],
      [121, [16, 10, 99, 10, 1, 0, 1, 24, 192, 168, 3, 0, 0, 0, 0, 0, 10, 1, 0, 9]],
    ]);
    expect(leaseRoutes(m, 0)).toEqual([
      { dst: '10.99.0.0/16', gw: '10.1.0.1' },
      { dst: '192.168.3.0/24', gw: '0.0.0.0', scope: 253 },
      { dst: '0.0.0.0/0', gw: '10.1.0.9' },
    ]);
    // A malformed option 121 is ignored (the fallbacks apply), never thrown.
    expect(classlessRoutes(Uint8Array.of(40, 1, 2))).toBeUndefined();
    expect(classlessRoutes(Uint8Array.of(24, 10, 0))).toBeUndefined();
  });

  it('the client ID is containerID/netName/ifName cut to 254 bytes', () => {
    expect(clientId('c', 'n', 'eth0')).toBe('c/n/eth0');
    expect(clientId('x'.repeat(300), 'n', 'eth0')).toHaveLength(254);
  });

  it('dhcp-daemon durations are Go style', () => {
    expect(parseDuration('timeout', '10s')).toBe(10_000);
    expect(parseDuration('timeout', '1m2s')).toBe(62_000);
    expect(parseDuration('timeout', '250ms')).toBe(250);
    expect(() => parseDuration('timeout', '10')).toThrow(/--timeout: "10" is not a duration/);
    expect(() => parseDuration('timeout', '0s')).toThrow(/longer than 0/);
  });
});

describe('dhcp daemon and plugin', () => {
  let dir: string;
  let daemon: DhcpDaemon | undefined;
  let clock: SimClock;
  let server: SimServer;
  let net: SimNet;
  const NS = '/var/run/netns/c1';

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dhcp-unit-'));
    clock = new SimClock();
    server = new SimServer(clock);
    net = new SimNet(server, clock);
    net.add(NS, 'eth0');
    net.add(NS, 'net1');
    daemon = await startDhcpDaemon({
      socketPath: join(dir, 'run', 'dhcp.sock'),
      pidfile: join(dir, 'dhcp.pid'),
      net,
      clock,
      log: () => {},
      random: () => 0.5,
      timing: { timeoutMs: 500, resendTimeoutMs: 5000 },
    });
  });
  afterEach(async () => {
    await daemon?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const conf = (extra: Record<string, unknown> = {}, name = 'net1') => ({
    cniVersion: '0.4.0',
    name,
    type: 'macvlan',
    ipam: { type: 'dhcp', daemonSocketPath: daemon?.socketPath, ...extra },
  });
  const run = (cmd: string, config: object, extra: Record<string, string> = {}) =>
    runPlugin(createDhcpPlugin(), {
      env: {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: 'ctr1',
        CNI_NETNS: NS,
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/nonexistent',
        ...extra,
      },
      stdin: JSON.stringify(config),
    });

  it('ADD returns the lease in the config version; ADD again is the same lease; DEL releases', async () => {
    const add = await run('ADD', conf({ priority: 5 }));
    expect(add.exitCode, add.stdout).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      cniVersion: '0.4.0',
      ips: [{ version: '4', address: '192.168.50.100/24', gateway: '192.168.50.1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '192.168.50.1' }],
    });
    const again = await run('ADD', conf());
    expect(JSON.parse(again.stdout).ips[0].address).toBe('192.168.50.100/24');
    expect(server.of(MessageType.DISCOVER)).toHaveLength(1);
    expect(daemon?.leases().map((l) => l.key)).toEqual(['ctr1/net1/eth0']);
    const del = await run('DEL', conf());
    expect(del.exitCode, del.stdout).toBe(0);
    expect(server.of(MessageType.RELEASE)).toHaveLength(1);
    expect(daemon?.leases()).toEqual([]);
    expect((await run('DEL', conf())).exitCode).toBe(0);
  });

  it('a relative CNI_NETNS reaches the daemon made absolute', async () => {
    const seen: DhcpCall[] = [];
    const fake: typeof callDhcpDaemon = async (_s, _op, call) => {
      seen.push(call);
      return { result: { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] } };
    };
    const r = await runPlugin(createDhcpPlugin({ call: fake }), {
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c',
        CNI_NETNS: 'ns/x',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/x',
        CNI_ARGS: 'A=1',
      },
      stdin: JSON.stringify(conf()),
    });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(seen[0]?.netns).toBe(join(process.cwd(), 'ns/x'));
    expect(seen[0]?.args).toBe('A=1');
  });

  it('concurrent ADDs of one attachment share one lease; other interfaces get their own', async () => {
    const [a, b, c] = await Promise.all([
      run('ADD', conf()),
      run('ADD', conf()),
      run('ADD', conf(), { CNI_IFNAME: 'net1' }),
    ]);
    expect(JSON.parse(a.stdout).ips).toEqual(JSON.parse(b.stdout).ips);
    expect(JSON.parse(c.stdout).ips[0].address).not.toBe(JSON.parse(a.stdout).ips[0].address);
    expect(server.of(MessageType.DISCOVER)).toHaveLength(2);
  });

  it('CHECK: the lease is held and matches prevResult; otherwise code 3 / an error naming both', async () => {
    const add = await run('ADD', conf());
    const prev = JSON.parse(add.stdout);
    expect((await run('CHECK', { ...conf(), prevResult: prev })).exitCode).toBe(0);
    const wrong = { ...prev, ips: [{ version: '4', address: '192.168.50.9/24' }] };
    const bad = await run('CHECK', { ...conf(), prevResult: wrong });
    expect(JSON.parse(bad.stdout).msg).toMatch(/holds 192\.168\.50\.100, not 192\.168\.50\.9\/24/);
    await run('DEL', conf());
    const gone = await run('CHECK', { ...conf(), prevResult: prev });
    expect(JSON.parse(gone.stdout).code).toBe(3);
  });

  it('GC releases the leases of this network that no valid attachment holds, and only those', async () => {
    await run('ADD', conf());
    await run('ADD', conf(), { CNI_CONTAINERID: 'ctr2' });
    await run('ADD', conf({}, 'other'), { CNI_CONTAINERID: 'ctr3' });
    const gc = await run('GC', {
      ...conf(),
      cniVersion: '1.1.0',
      'cni.dev/valid-attachments': [{ containerID: 'ctr2', ifname: 'eth0' }],
    });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(
      daemon
        ?.leases()
        .map((l) => l.key)
        .sort(),
    ).toEqual(['ctr2/net1/eth0', 'ctr3/other/eth0']);
    expect(server.of(MessageType.RELEASE)).toHaveLength(1);
  });

  it('STATUS succeeds while the daemon answers', async () => {
    const st = await run('STATUS', { ...conf(), cniVersion: '1.1.0' });
    expect(st.exitCode, st.stdout).toBe(0);
  });

  it('no DHCP server: ADD fails with code 11 after --resend-timeout, leaving no lease', async () => {
    server.answerBroadcast = false;
    const p = run('ADD', conf());
    for (let i = 0; i < 10; i++) await clock.advance(1000);
    const add = await p;
    expect(add.exitCode).not.toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 11 });
    expect(JSON.parse(add.stdout).msg).toMatch(/no lease for eth0/);
    expect(daemon?.leases()).toEqual([]);
  });

  it('a plugin that goes away (the runtime killed it) cancels its acquisition', async () => {
    server.answerBroadcast = false;
    const ac = new AbortController();
    const call = { containerId: 'ctr1', netns: NS, ifname: 'eth0', args: '', config: JSON.stringify(conf()) };
    const p = callDhcpDaemon(daemon?.socketPath ?? '', 'allocate', call, ac.signal).catch((e: Error) => e);
    // DISCOVER at 0, no OFFER within 500 ms, the next one due at 2500 (a 2 s fast resend).
    await clock.advance(1000);
    const sent = server.of(MessageType.DISCOVER).length;
    expect(sent).toBe(1);
    ac.abort();
    expect(await p).toBeInstanceOf(Error);
    // The daemon has seen the plugin go once the acquisition's sleep is cancelled (no fixed wait).
    await expect.poll(() => clock.sleepers(), { timeout: 10_000 }).toBe(0);
    await clock.advance(30_000);
    expect(server.of(MessageType.DISCOVER).length).toBe(sent);
    expect(daemon?.leases()).toEqual([]);
    // The attachment is free for the next call at once.
    server.answerBroadcast = true;
    const add = await run('ADD', conf());
    expect(add.exitCode, add.stdout).toBe(0);
  });

  it('a server without a subnet mask: ADD fails naming option 1, and the lease is released', async () => {
    server.sendMask = false;
    const add = await run('ADD', conf());
    expect(JSON.parse(add.stdout).msg).toContain('option 1');
    expect(server.of(MessageType.RELEASE)).toHaveLength(1);
    expect(daemon?.leases()).toEqual([]);
  });

  it('config errors are code 7 naming the field and the fix', async () => {
    for (const [ipam, field] of [
      [{ provide: [{ option: 'bogus', value: 'x' }] }, 'ipam.provide[0].option'],
      [{ provide: [{ option: '12', value: 'x'.repeat(256) }] }, 'ipam.provide[0].value'],
      [{ request: [{ option: '300' }] }, 'ipam.request[0].option'],
      [{ priority: -1 }, 'ipam.priority'],
      [{ daemonSocketPath: 5 }, 'ipam.daemonSocketPath'],
    ] as const) {
      const r = await run('ADD', conf(ipam));
      expect(r.exitCode).not.toBe(0);
      const e = JSON.parse(r.stdout) as { code: number; msg: string };
      expect(e.code, JSON.stringify(ipam)).toBe(7);
      expect(e.msg).toContain(field);
    }
    expect(server.seen).toHaveLength(0);
    // DEL of such a config succeeds: ADD cannot have leased anything with it.
    expect((await run('DEL', conf({ provide: [{ option: 'bogus' }] }))).exitCode).toBe(0);
  });

  it('a CNI_ARGS value over 255 bytes for fromArg is code 7 naming it', async () => {
    const r = await run('ADD', conf({ provide: [{ option: 'host-name', fromArg: 'K8S_POD_NAME' }] }), {
      CNI_ARGS: `K8S_POD_NAME=${'p'.repeat(300)}`,
    });
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(r.stdout).msg).toContain('ipam.provide[0].fromArg');
  });

  it('refuses to start on a socket another daemon serves; close removes socket and pidfile', async () => {
    const path = daemon?.socketPath ?? '';
    await expect(startDhcpDaemon({ socketPath: path, net, log: () => {} })).rejects.toThrow(
      /already listens/,
    );
    await daemon?.close();
    const { existsSync } = await import('node:fs');
    expect(existsSync(path)).toBe(false);
    expect(existsSync(join(dir, 'dhcp.pid'))).toBe(false);
    daemon = undefined;
  });

  it('--hostprefix: the socket and every netns path live under the prefix', async () => {
    const prefix = join(dir, 'host');
    net.add(`${prefix}${NS}`, 'eth0');
    const d = await startDhcpDaemon({
      socketPath: '/run/cni/dhcp.sock',
      hostPrefix: prefix,
      net,
      clock,
      log: () => {},
    });
    try {
      expect(d.socketPath).toBe(`${prefix}/run/cni/dhcp.sock`);
      const r = await run('ADD', { ...conf(), ipam: { type: 'dhcp', daemonSocketPath: d.socketPath } });
      expect(r.exitCode, r.stdout).toBe(0);
      expect(d.leases()[0]?.netns).toBe(`${prefix}${NS}`);
    } finally {
      await d.close();
    }
  });

  it('the wire: unknown routes are 404 CNI errors', async () => {
    await expect(
      callDhcpDaemon(daemon?.socketPath ?? '', 'nope' as never, {
        containerId: 'c',
        netns: NS,
        ifname: 'eth0',
        args: '',
        config: '{}',
      }),
    ).rejects.toThrow(/no POST \/v1\/nope/);
  });
});
