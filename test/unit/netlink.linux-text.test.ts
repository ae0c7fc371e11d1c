// The Linux backend's text layer without a kernel: op → `ip` line, `ip -json` → types, error text → errno.
import { describe, expect, it } from 'vitest';
import { errnoFromText } from '../../src/netlink/errors.js';
import { ipLines, needsTolerance, toolOf } from '../../src/netlink/linux/commands.js';
import {
  parseAddrs,
  parseLinks,
  parseQdiscs,
  parseRedirects,
  parseRoutes,
  parseRules,
  parseVlans,
} from '../../src/netlink/linux/parse.js';

describe('ip command lines', () => {
  it('creates a veth with its peer placed in another netns', () => {
    expect(
      ipLines({
        t: 'link-add',
        spec: { kind: 'veth', name: 'eth0', peerName: 'veth1', peerNetns: '/proc/1/ns/net', mtu: 1400 },
      }),
    ).toEqual(['link add name eth0 mtu 1400 type veth peer name veth1 netns /proc/1/ns/net']);
  });

  it('creates a macvlan on a parent directly inside a netns', () => {
    expect(
      ipLines({
        t: 'link-add',
        spec: { kind: 'macvlan', name: 'tmp1', parent: 'eth0', netns: '/run/netns/c', mode: 'vepa' },
      }),
    ).toEqual(['link add link eth0 name tmp1 netns /run/netns/c type macvlan mode vepa']);
  });

  it('orders link settings as one request and bridge-port flags as a second', () => {
    expect(
      ipLines({
        t: 'link-set',
        name: 'v0',
        set: { up: true, master: 'br0', hairpin: true, mtu: 1450, alias: null },
      }),
    ).toEqual([
      'link set dev v0 mtu 1450 master br0 alias "" up',
      'link set dev v0 type bridge_slave hairpin on',
    ]);
    expect(ipLines({ t: 'link-set', name: 'v0', set: {} })).toEqual([]);
  });

  it('uses addr replace for existsOk addresses and sets the IPv4 broadcast', () => {
    const op = {
      t: 'addr-add',
      link: 'br0',
      cidr: '10.0.0.1/24',
      family: 4,
      noDad: false,
      ok: 'exists',
    } as const;
    expect(ipLines(op)).toEqual(['addr replace 10.0.0.1/24 brd + dev br0']);
    expect(needsTolerance(op)).toBe(false);
    expect(needsTolerance({ t: 'link-del', name: 'x', ok: 'missing' })).toBe(true);
  });

  it('writes routes with every attribute', () => {
    expect(
      ipLines({
        t: 'route-replace',
        route: { dst: '::/0', family: 6, gw: 'fd00::1', dev: 'eth0', table: 100, metric: 5, mtu: 1400 },
      }),
    ).toEqual(['route replace ::/0 via fd00::1 dev eth0 table 100 metric 5 mtu 1400']);
  });
});

describe('ip -json parsing', () => {
  it('resolves same-netns peers by name and keeps cross-netns ones by index', () => {
    const json = JSON.stringify([
      {
        ifindex: 3,
        link: 'v0',
        ifname: 'v1',
        flags: ['BROADCAST', 'UP', 'LOWER_UP'],
        mtu: 1500,
        operstate: 'UP',
        address: 'aa:bb:cc:dd:ee:01',
        txqlen: 1000,
        linkinfo: { info_kind: 'veth' },
      },
      {
        ifindex: 4,
        link: 'v1',
        ifname: 'v0',
        flags: ['PROMISC'],
        mtu: 1500,
        operstate: 'DOWN',
        address: 'aa:bb:cc:dd:ee:02',
        master: 'br0',
        linkinfo: {
          info_kind: 'veth',
          info_slave_kind: 'bridge',
          info_slave_data: { hairpin: true, isolated: false },
        },
      },
      {
        ifindex: 5,
        link_index: 9,
        link_netnsid: 0,
        ifname: 'eth0',
        flags: [],
        mtu: 1500,
        address: 'aa:bb:cc:dd:ee:03',
        ifalias: 'orig',
        linkinfo: { info_kind: 'macvlan', info_data: { mode: 'bridge' } },
      },
    ]);
    const [v1, v0, eth0] = parseLinks(json);
    expect(v1).toMatchObject({ index: 3, parentIndex: 4, up: true, lowerUp: true, kind: 'veth' });
    expect(v0).toMatchObject({
      parentIndex: 3,
      master: 'br0',
      hairpin: true,
      isolated: false,
      promisc: true,
    });
    expect(eth0).toMatchObject({ parentIndex: 9, parentNetnsId: 0, alias: 'orig', macvlanMode: 'bridge' });
  });

  it('normalizes addresses, routes and rules', () => {
    const addrs = parseAddrs(
      JSON.stringify([
        {
          ifindex: 2,
          ifname: 'e0',
          addr_info: [
            { family: 'inet6', local: 'fd00:0:0::2', prefixlen: 64, scope: 'global', tentative: true },
          ],
        },
      ]),
    );
    expect(addrs).toEqual([
      {
        link: 'e0',
        index: 2,
        family: 6,
        cidr: 'fd00::2/64',
        ip: 'fd00::2',
        prefixLength: 64,
        scope: 'global',
        tentative: true,
        dadFailed: false,
      },
    ]);
    const routes = parseRoutes(
      JSON.stringify([
        { dst: 'default', gateway: '10.0.0.1', dev: 'e0', flags: [] },
        { dst: '10.8.0.5', dev: 'e0', scope: 'link', metrics: [{ mtu: 1300 }] },
      ]),
      4,
      100,
    );
    expect(routes[0]).toMatchObject({
      dst: '0.0.0.0/0',
      gw: '10.0.0.1',
      table: 100,
      scope: 'global',
      protocol: 'boot',
      type: 'unicast',
    });
    expect(routes[1]).toMatchObject({ dst: '10.8.0.5/32', scope: 'link', mtu: 1300 });
    expect(
      parseRules(
        JSON.stringify([{ priority: 98, src: 'all', dst: '10.3.0.0', dstlen: 16, table: 'main' }]),
        4,
      ),
    ).toEqual([{ family: 4, priority: 98, dst: '10.3.0.0/16', table: 254 }]);
  });
});

describe('tc and bridge text', () => {
  it('writes the bandwidth plugin qdiscs and bridge VLAN commands for the right tool', () => {
    const tbf = {
      t: 'tbf',
      link: 'veth1',
      spec: { rateBits: 1_000_000, burstBytes: 4096, latencyMs: 25 },
    } as const;
    expect(ipLines(tbf)).toEqual([
      'qdisc replace dev veth1 root handle 1: tbf rate 1000000bit burst 4096b latency 25ms',
    ]);
    expect(toolOf(tbf)).toBe('tc');
    const vlan = { t: 'vlan-add', link: 'veth1', vid: 100, pvid: true, untagged: true, self: false } as const;
    expect(ipLines(vlan)).toEqual(['vlan add dev veth1 vid 100 pvid untagged']);
    expect(toolOf(vlan)).toBe('bridge');
  });

  it('parses qdiscs without kernel defaults, mirred targets and VLAN ranges', () => {
    const q = parseQdiscs(
      JSON.stringify([
        { kind: 'noqueue', handle: '0:', dev: 'v1', root: true },
        {
          kind: 'tbf',
          handle: '1:',
          dev: 'v0',
          root: true,
          options: { rate: 125000, burst: 4096, lat: 25000 },
        },
      ]),
    );
    expect(q).toEqual([
      {
        link: 'v0',
        kind: 'tbf',
        handle: '1:',
        root: true,
        rateBytes: 125000,
        burstBytes: 4096,
        latencyUs: 25000,
      },
    ]);
    expect(
      parseRedirects(
        JSON.stringify([
          { kind: 'u32' },
          { kind: 'u32', options: { actions: [{ kind: 'mirred', to_dev: 'bwp1' }] } },
        ]),
      ),
    ).toEqual(['bwp1']);
    expect(
      parseVlans(
        JSON.stringify([
          {
            ifname: 'v0',
            vlans: [
              { vlan: 1, flags: ['PVID', 'Egress Untagged'] },
              { vlan: 10, vlanEnd: 12 },
            ],
          },
        ]),
      ).map((v) => `${v.vid}${v.pvid ? 'P' : ''}${v.untagged ? 'U' : ''}`),
    ).toEqual(['1PU', '10', '11', '12']);
  });
});

describe('kernel error text', () => {
  it.each([
    ['RTNETLINK answers: File exists', 'EEXIST'],
    ['Error: An interface with the same name exists in the target netns.', 'EEXIST'],
    ['Cannot find device "eth9"', 'ENODEV'],
    ['RTNETLINK answers: Operation not permitted', 'EPERM'],
    ['RTNETLINK answers: Device or resource busy', 'EBUSY'],
    ['Error: Unknown device type.', 'EOPNOTSUPP'],
    ['RTNETLINK answers: No such process', 'ESRCH'],
    ['Error: ipv4: Address not found.', 'EADDRNOTAVAIL'],
    ['Error: Nexthop has invalid gateway.', 'ENETUNREACH'],
    ['Error: Device for nexthop is not up.', 'ENETDOWN'],
    ['Error: Exclusivity flag on, cannot modify.', 'EEXIST'],
    ["Error: Parent Qdisc doesn't exists.", 'ENOENT'],
    ['Error: Cannot delete qdisc with handle of zero.', 'ENOENT'],
    ['sh: 1: cannot create /proc/sys/net/ipv4/conf/x/arp_notify: Directory nonexistent', 'ENOENT'],
    ['something else entirely', 'EIO'],
  ])('%s → %s', (text, errno) => {
    expect(errnoFromText(text)).toBe(errno);
  });
});
