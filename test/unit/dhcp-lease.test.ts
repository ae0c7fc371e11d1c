// The dhcp lease logic against a simulated server and clock: what each message carries, renewal
// at T1 (unicast), rebinding at T2 (broadcast), expiry, NAK, the retry schedule, a vanished link,
// release.
import { describe, expect, it } from 'vitest';
import { DhcpLease, type LeaseDeps, type LeaseTiming } from '../../src/ipam/dhcp/lease.js';
import { clientIdOption, leaseOptions, parseDhcpConfig } from '../../src/ipam/dhcp/options.js';
import { ip4, ip4List, MessageType, Opt } from '../../src/ipam/dhcp/packet.js';
import { SimClock, SimNet, SimServer } from '../helpers/dhcp-sim.js';

const NS = '/var/run/netns/c1';

function setup(timing: Partial<LeaseTiming> = {}) {
  const clock = new SimClock();
  const server = new SimServer(clock);
  const net = new SimNet(server, clock);
  net.add(NS, 'eth0');
  const logs: string[] = [];
  const deps: LeaseDeps = {
    net,
    clock,
    timing: { timeoutMs: 1000, resendMaxMs: 16_000, resendTimeoutMs: 60_000, broadcast: false, ...timing },
    log: (level, msg) => logs.push(`${level} ${msg}`),
    random: () => 0.5, // no jitter
  };
  const ended: DhcpLease[] = [];
  const spec = (ipam: Record<string, unknown> = {}, args = '') => {
    const key = 'ctr1/net1/eth0';
    const options = leaseOptions(parseDhcpConfig({ ipam: { type: 'dhcp', ...ipam } }), args);
    return { key, netns: NS, ifname: 'eth0', params: { clientId: clientIdOption(key), options } };
  };
  const acquire = (ipam: Record<string, unknown> = {}, args = '') =>
    DhcpLease.acquire(spec(ipam, args), deps, new AbortController().signal, (l) => ended.push(l));
  return { clock, server, net, deps, logs, ended, acquire, spec };
}

describe('dhcp lease: acquire', () => {
  it('DISCOVER then REQUEST for the offered address, with client ID, parameter list and provided options', async () => {
    const { server, acquire } = setup();
    const lease = await acquire(
      { provide: [{ option: 'host-name', value: 'literal', fromArg: 'K8S_POD_NAME' }] },
      'IgnoreUnknown=1;K8S_POD_NAME=web-0',
    );
    const [d] = server.of(MessageType.DISCOVER);
    const [r] = server.of(MessageType.REQUEST);
    expect(d?.to).toBe('broadcast');
    expect(d?.srcIp).toBe(0);
    expect(d?.msg.broadcast).toBe(false);
    expect(Buffer.from(d?.msg.options.get(Opt.CLIENT_ID) ?? []).toString('latin1')).toBe('\0ctr1/net1/eth0');
    expect([...(d?.msg.options.get(Opt.PARAMETER_LIST) ?? [])]).toEqual([Opt.ROUTER, Opt.SUBNET_MASK]);
    // fromArg, when CNI_ARGS has it, wins over value (as the reference applies them in order).
    expect(Buffer.from(d?.msg.options.get(Opt.HOST_NAME) ?? []).toString()).toBe('web-0');
    expect(r?.msg.xid).toBe(d?.msg.xid);
    expect(ip4List(r?.msg.options.get(Opt.REQUESTED_IP))).toEqual([ip4('192.168.50.100')]);
    expect(ip4List(r?.msg.options.get(Opt.SERVER_ID))).toEqual([server.serverIp]);
    expect(lease.result(0)).toEqual({
      ips: [{ address: '192.168.50.100/24', gateway: '192.168.50.1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '192.168.50.1' }],
    });
    await lease.halt();
  });

  it('request: listed options first, defaults dropped by skipDefault; value used without the CNI_ARG', async () => {
    const { server, acquire } = setup();
    const a = await acquire({ request: [{ option: '121' }, { option: 'host-name' }] });
    expect([...(server.seen[0]?.msg.options.get(Opt.PARAMETER_LIST) ?? [])]).toEqual([121, 12, 3, 1]);
    await a.halt();
    server.seen.length = 0;
    const b = await acquire({
      request: [{ option: '121', skipDefault: true }],
      provide: [{ option: '12', value: 'fixed', fromArg: 'MISSING' }],
    });
    expect([...(server.seen[0]?.msg.options.get(Opt.PARAMETER_LIST) ?? [])]).toEqual([121]);
    expect(Buffer.from(server.seen[0]?.msg.options.get(Opt.HOST_NAME) ?? []).toString()).toBe('fixed');
    await b.halt();
  });

  it('a provided dhcp-client-identifier replaces the default one', async () => {
    const { server, acquire } = setup();
    const l = await acquire({ provide: [{ option: 'dhcp-client-identifier', value: 'mine' }] });
    expect(Buffer.from(server.seen[0]?.msg.options.get(Opt.CLIENT_ID) ?? []).toString()).toBe('mine');
    await l.halt();
  });

  it('--broadcast sets the BROADCAST flag', async () => {
    const { server, acquire } = setup({ broadcast: true });
    const l = await acquire();
    expect(server.seen[0]?.msg.broadcast).toBe(true);
    await l.halt();
  });

  it('a NAK is retried after the fast resend delay, then the lease is granted', async () => {
    const { server, clock, acquire } = setup();
    server.nakNext = 1;
    const p = acquire();
    await clock.advance(2_000);
    const l = await p;
    expect(server.of(MessageType.DISCOVER).map((s) => s.at - (server.seen[0]?.at ?? 0))).toEqual([0, 2_000]);
    expect(l.address).toBe('192.168.50.100');
    await l.halt();
  });

  it('retries as the reference: 4 fast resends 2 s apart, then 4 s doubling up to --resend-max, until --resend-timeout', async () => {
    const { server, clock, acquire } = setup({
      timeoutMs: 1000,
      resendMaxMs: 16_000,
      resendTimeoutMs: 60_000,
    });
    server.answerBroadcast = false;
    const p = acquire().catch((e: Error) => e);
    await clock.advance(70_000);
    const err = await p;
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/no more tries/);
    const at = server.of(MessageType.DISCOVER).map((s) => s.at - (server.seen[0]?.at ?? 0));
    // Each attempt waits 1 s for an OFFER, then pauses.
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number) - 1000);
    expect(gaps).toEqual([2000, 2000, 2000, 2000, 4000, 8000, 16000, 16000].slice(0, gaps.length));
    expect(at.length).toBeGreaterThanOrEqual(8);
  });

  it('a link that is not there fails at once (no retries)', async () => {
    const { net, server, acquire } = setup();
    net.links.clear();
    await expect(acquire()).rejects.toThrow(/no interface eth0/);
    expect(server.seen).toHaveLength(0);
  });
});

describe('dhcp lease: upkeep', () => {
  it('renews at T1 by unicast from the leased address to the server MAC, and moves T1 on', async () => {
    const { server, clock, acquire } = setup();
    server.leaseSeconds = 100;
    const l = await acquire();
    const t0 = clock.now();
    expect((l.info().renewAt ?? 0) - t0).toBe(50_000);
    expect((l.info().rebindAt ?? 0) - t0).toBe(85_000);
    await clock.advance(49_000);
    expect(l.renewals).toBe(0);
    await clock.advance(1_000);
    expect(l.renewals).toBe(1);
    const [req] = server.of(MessageType.REQUEST).slice(1);
    expect(req?.to).toBe('unicast');
    expect(req?.toMac).toBe('02:00:00:00:00:01');
    expect(req?.srcIp).toBe(ip4('192.168.50.100'));
    expect(req?.msg.ciaddr).toBe(ip4('192.168.50.100'));
    expect(req?.msg.options.has(Opt.REQUESTED_IP)).toBe(false);
    expect(l.info().renewAt).toBe(clock.now() + 50_000);
    await l.halt();
  });

  it('T1 and T2 from the server (options 58/59) are used', async () => {
    const { server, acquire, clock } = setup();
    server.leaseSeconds = 600;
    server.t1 = 10;
    server.t2 = 20;
    const l = await acquire();
    expect((l.info().renewAt ?? 0) - clock.now()).toBe(10_000);
    expect((l.info().rebindAt ?? 0) - clock.now()).toBe(20_000);
    await l.halt();
  });

  it('rebinds by broadcast at T2 when the server does not answer renewals', async () => {
    const { server, clock, acquire } = setup();
    server.leaseSeconds = 100;
    const l = await acquire();
    server.answerUnicast = false;
    await clock.advance(84_000);
    expect(l.state).toBe('renewing');
    expect(l.rebinds).toBe(0);
    await clock.advance(2_000);
    expect(l.rebinds).toBe(1);
    expect(l.state).toBe('bound');
    const last = server.of(MessageType.REQUEST).at(-1);
    expect(last?.to).toBe('broadcast');
    expect(last?.msg.ciaddr).toBe(ip4('192.168.50.100'));
    await l.halt();
  });

  it('a lease nobody extends expires: the link is set down and the lease ends', async () => {
    const { server, clock, net, ended, acquire } = setup();
    server.leaseSeconds = 100;
    const l = await acquire();
    server.answerUnicast = false;
    server.answerBroadcast = false;
    await clock.advance(99_000);
    expect(l.state).toBe('rebinding');
    await clock.advance(3_000);
    expect(l.state).toBe('expired');
    expect(net.downs).toEqual([`${NS}/eth0`]);
    expect(ended).toEqual([l]);
  });

  it('a link (or netns) that disappears ends the lease quietly at the next wake-up', async () => {
    const { clock, net, ended, logs, acquire } = setup();
    const l = await acquire();
    net.links.clear();
    await clock.advance(61_000);
    expect(l.state).toBe('dropped');
    expect(ended).toEqual([l]);
    expect(logs.join('\n')).toContain('lease dropped');
  });

  it('release stops the upkeep and sends DHCPRELEASE unicast with ciaddr and the server ID', async () => {
    const { server, clock, acquire } = setup();
    const l = await acquire();
    await l.release();
    const [rel] = server.of(MessageType.RELEASE);
    expect(rel?.to).toBe('unicast');
    expect(rel?.toMac).toBe('02:00:00:00:00:01');
    expect(rel?.msg.ciaddr).toBe(ip4('192.168.50.100'));
    expect(ip4List(rel?.msg.options.get(Opt.SERVER_ID))).toEqual([server.serverIp]);
    expect(l.state).toBe('released');
    const before = server.seen.length;
    await clock.advance(10 * 60_000);
    expect(server.seen.length).toBe(before);
  });

  it('release of a lease whose link is gone logs and succeeds', async () => {
    const { net, logs, acquire } = setup();
    const l = await acquire();
    net.links.clear();
    await l.release();
    expect(logs.join('\n')).toContain('DHCPRELEASE not sent');
  });

  it('an infinite lease (0xffffffff) is never renewed', async () => {
    const { server, clock, acquire } = setup();
    server.leaseSeconds = 0xffffffff;
    const l = await acquire();
    await clock.advance(7 * 24 * 3600_000);
    expect(server.of(MessageType.REQUEST)).toHaveLength(1);
    expect(l.info().expiresAt).toBeNull();
    await l.halt();
  });
});
