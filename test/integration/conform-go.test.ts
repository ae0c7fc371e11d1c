import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  conform,
  detailsOf,
  expectAllPass,
  failedIds,
  failures,
  freshDir,
  GO,
  hostLocal,
  MACVLAN_MASTER,
  need,
  PREV_RESULT,
  useConformSuite,
} from '../helpers/conform.js';

useConformSuite();

describe.concurrent('the Go reference plugins (containernetworking-plugins 1.1.1)', () => {
  const V = ['0.3.1', '1.0.0'];

  // Go bridge and ptp release IPAM but return early when the netns is gone, before tearing down
  // IP masquerade (ip.DelLinkByNameAddr yields no addresses), so the per-container nat chain and
  // its POSTROUTING jump stay. Upstream v1.9.1 still returns early there.
  for (const [type, subnet] of [
    ['bridge', '10.81.0.0/24'],
    ['ptp', '10.82.0.0/24'],
  ] as const) {
    it(`${type} + host-local: passes every check`, async (ctx) => {
      need(ctx, join(GO, type));
      const config = { type, bridge: 'ckgobr1', isGateway: true, ipam: hostLocal(subnet) };
      expectAllPass(await conform(join(GO, type), config, { versions: V }), V);
    }, 120_000);
  }
  for (const [type, subnet] of [
    ['bridge', '10.83.0.0/24'],
    ['ptp', '10.84.0.0/24'],
  ] as const) {
    it(`${type} + host-local with ipMasq: leaves its masquerade chain when the netns is gone`, async (ctx) => {
      need(ctx, join(GO, type));
      const config = { type, bridge: 'ckgobr0', isGateway: true, ipMasq: true, ipam: hostLocal(subnet) };
      const r = await conform(join(GO, type), config, { versions: V });
      expect(failedIds(r), failures(r).join('\n')).toEqual(['leftovers:netns-gone']);
      for (const d of detailsOf(r, 'leftovers:netns-gone')) {
        expect(d).toMatch(/chain ip4 nat: :CNI-[0-9a-f]{24} - left behind/);
        expect(d).toMatch(
          /rule ip4 nat: -A POSTROUTING -s 10\.\d+\.0\.\d+\/32 .* -j CNI-[0-9a-f]{24} left behind/,
        );
      }
      expect(r.versions).toEqual(V);
    }, 120_000);
  }

  it('macvlan + host-local', async (ctx) => {
    need(ctx, join(GO, 'macvlan'));
    const config = { type: 'macvlan', master: 'eth0', mode: 'bridge', ipam: hostLocal('10.85.0.0/24') };
    expectAllPass(await conform(join(GO, 'macvlan'), config, { versions: V, nodeSetup: MACVLAN_MASTER }), V);
  }, 120_000);

  it('host-local', async (ctx) => {
    need(ctx, join(GO, 'host-local'));
    const ipam = hostLocal('10.86.0.0/24');
    expectAllPass(await conform(join(GO, 'host-local'), { type: 'host-local', ipam }, { versions: V }), V);
  }, 120_000);

  it('static', async (ctx) => {
    need(ctx, join(GO, 'static'));
    const ipam = { type: 'static', addresses: [{ address: '10.87.0.5/24', gateway: '10.87.0.1' }] };
    expectAllPass(await conform(join(GO, 'static'), { type: 'static', ipam }, { versions: V }), V);
  }, 120_000);

  // Go loopback builds a 1.0 result stamped with the config's version, so printing it converts
  // nothing: at 0.3.1 its ips lack "version" (the 1.0.0 run passes). Upstream v1.9.1 still does so.
  it('loopback: its 0.3.1 result lacks ips[].version', async (ctx) => {
    need(ctx, join(GO, 'loopback'));
    const r = await conform(join(GO, 'loopback'), { type: 'loopback' }, { versions: V, ifname: 'lo' });
    expect(failures(r)).toEqual([
      'add@0.3.1: ips[0].version: must be "4" or "6" in 0.3.1; ips[1].version: must be "4" or "6" in 0.3.1',
    ]);
  }, 120_000);

  const chained = { versions: V, prevResult: PREV_RESULT };

  // Go tuning ignores the error of entering a netns that is gone, so its backup file
  // (<dataDir>/<containerID>_<ifname>.json) is never removed. Upstream v1.9.1 still does so.
  it('tuning: keeps its backup file when the netns is gone', async (ctx) => {
    need(ctx, join(GO, 'tuning'));
    const dataDir = freshDir('gotuning');
    const config = { type: 'tuning', mtu: 1400, promisc: true, mac: '0a:58:0a:d3:00:98', dataDir };
    const r = await conform(join(GO, 'tuning'), config, chained);
    expect(failedIds(r), failures(r).join('\n')).toEqual(['leftovers:netns-gone']);
    for (const d of detailsOf(r, 'leftovers:netns-gone')) {
      expect(d).toMatch(new RegExp(`^file ${dataDir}/ck-[0-9a-f]+-\\d+_eth0\\.json left behind$`));
    }
  }, 120_000);

  // Go portmap 1.1.1's CHECK looks for the container's DNAT chain in ip6tables too whenever
  // ip6tables works, also for an IPv4-only container (fixed upstream in v1.3.0 by fb5d195f, "Only
  // check ipv6 when an IPv6 is configured").
  it('portmap: CHECK fails for an IPv4-only container', async (ctx) => {
    need(ctx, join(GO, 'portmap'));
    const config = {
      type: 'portmap',
      snat: true,
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
    };
    const r = await conform(join(GO, 'portmap'), config, chained);
    expect(failures(r)).toEqual([
      expect.stringMatching(
        /^check@1\.0\.0: CHECK: exit status 1: code 999: could not check ipv6 dnat: chain CNI-DN-/,
      ),
    ]);
  }, 120_000);

  it('bandwidth', async (ctx) => {
    need(ctx, join(GO, 'bandwidth'));
    const rates = {
      ingressRate: 1_000_000,
      ingressBurst: 100_000,
      egressRate: 1_000_000,
      egressBurst: 100_000,
    };
    expectAllPass(await conform(join(GO, 'bandwidth'), { type: 'bandwidth', ...rates }, chained), V);
  }, 120_000);

  it('firewall (it lists 0.4.0 and 1.0.0 only)', async (ctx) => {
    need(ctx, join(GO, 'firewall'));
    const r = await conform(join(GO, 'firewall'), { type: 'firewall', backend: 'iptables' }, chained);
    expectAllPass(r, ['1.0.0']);
    expect(r.versionsNotTried).toContainEqual({ version: '0.3.1', reason: 'the plugin does not list it' });
  }, 120_000);

  // Go sbr 1.1.1: DEL deletes its ip rules but leaves the routes it moved into table 100 (and the
  // main table without them); and DEL with the netns gone first takes a file lock on CNI_NETNS,
  // which creates a regular file there, then fails on it. Upstream v1.9.1 still locks the path.
  it('sbr: DEL keeps its routing table and fails (creating a file at CNI_NETNS) when the netns is gone', async (ctx) => {
    need(ctx, join(GO, 'sbr'));
    const r = await conform(join(GO, 'sbr'), { type: 'sbr' }, chained);
    expect(failedIds(r), failures(r).join('\n')).toEqual([
      'del-netns-gone',
      'leftovers',
      'leftovers:netns-gone',
    ]);
    for (const d of detailsOf(r, 'leftovers')) {
      expect(d).toContain('container: route inet default via 10.211.0.1 dev eth0 table 100 left behind');
    }
    for (const d of detailsOf(r, 'del-netns-gone')) expect(d).toMatch(/unknown FS magic/);
    for (const d of detailsOf(r, 'leftovers:netns-gone'))
      expect(d).toMatch(/a file at CNI_NETNS \/run\/netns\//);
  }, 120_000);
});
