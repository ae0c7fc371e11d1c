// static IPAM: sources and precedence, validation messages, CHECK against prevResult.
import { CniError } from 'cni-kit';
import { type IpamNetConf, StaticAllocator } from 'cni-kit/ipam';
import { describe, expect, it } from 'vitest';

function conf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): IpamNetConf {
  return { cniVersion: '1.0.0', name: 'st', type: 'macvlan', ipam: { type: 'static', ...ipam }, ...extra };
}

async function rejects(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected rejection');
}

const addrs = (r: { ips?: Array<{ address: string; gateway?: string }> }) =>
  r.ips!.map((i) => (i.gateway ? `${i.address} via ${i.gateway}` : i.address));

describe('static', () => {
  it('echoes addresses (host bits kept), routes and dns', async () => {
    const c = conf({
      addresses: [{ address: '10.10.0.7/24', gateway: '10.10.0.1' }, { address: '3ffe:ffff:0::7/64' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['8.8.8.8'], domain: 'example.com' },
    });
    const r = await new StaticAllocator(c).allocate({ containerId: 'c', ifname: 'eth0' });
    expect(r).toEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.10.0.7/24', gateway: '10.10.0.1' }, { address: '3ffe:ffff::7/64' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['8.8.8.8'], domain: 'example.com' },
    });
  });

  it('CNI_ARGS IP= appends, GATEWAY= sets the gateway of every address in its subnet', async () => {
    const c = conf({ addresses: [{ address: '10.10.0.7/24' }] });
    const r = await new StaticAllocator(c).allocate({
      containerId: 'c',
      ifname: 'eth0',
      args: [
        ['IP', '10.10.0.8/24, 10.20.0.8/16'],
        ['GATEWAY', '10.10.0.1'],
      ],
    });
    expect(addrs(r)).toEqual(['10.10.0.7/24 via 10.10.0.1', '10.10.0.8/24 via 10.10.0.1', '10.20.0.8/16']);
  });

  it('args.cni.ips replaces CNI_ARGS, and runtimeConfig.ips replaces both', async () => {
    const base = { addresses: [{ address: '10.10.0.7/24' }] };
    const args: Array<[string, string]> = [['IP', '10.10.0.8/24']];
    const withArgs = conf(base, { args: { cni: { ips: ['10.30.0.5/24'] } } });
    expect(
      addrs(await new StaticAllocator(withArgs).allocate({ containerId: 'c', ifname: 'e', args })),
    ).toEqual(['10.30.0.5/24']);
    const withRc = conf(base, {
      args: { cni: { ips: ['10.30.0.5/24'] } },
      runtimeConfig: { ips: ['10.40.0.5/24'] },
    });
    expect(
      addrs(await new StaticAllocator(withRc).allocate({ containerId: 'c', ifname: 'e', args })),
    ).toEqual(['10.40.0.5/24']);
  });

  it('errors name the field, the value and the expected form', async () => {
    const cases: Array<[IpamNetConf, string]> = [
      [
        conf({ addresses: [{ address: '10.0.0.1' }] }),
        'ipam.addresses[0].address: "10.0.0.1" is not in CIDR notation',
      ],
      [
        conf({ addresses: [{ address: '10.0.0.1/24', gateway: 'x' }] }),
        'ipam.addresses[0].gateway: "x" is not an IP',
      ],
      [conf({ addresses: [{ address: '10.0.0.1/24', gateway: 'fd00::1' }] }), 'not the same family'],
      [
        conf({}, { runtimeConfig: { ips: ['10.0.0.1'] } }),
        'runtimeConfig.ips[0]: "10.0.0.1" is not in CIDR notation',
      ],
      [
        conf(
          { addresses: [{ address: '10.0.0.1/24' }, { address: '10.0.0.2/24' }] },
          { cniVersion: '0.2.0' },
        ),
        'does not support more than 1 address per family',
      ],
      [{ cniVersion: '1.0.0', name: 'x' }, 'ipam: missing'],
    ];
    for (const [c, msg] of cases) {
      const e = await rejects(
        (async () => new StaticAllocator(c).allocate({ containerId: 'c', ifname: 'e' }))(),
      );
      expect(e.code, msg).toBe(7);
      expect(e.message).toContain(msg);
    }
    const e = await rejects(
      new StaticAllocator(conf({})).allocate({ containerId: 'c', ifname: 'e', args: [['GATEWAY', 'nope']] }),
    );
    expect(e.message).toContain('CNI_ARGS GATEWAY');
  });

  it('CHECK needs prevResult and matches address and gateway', async () => {
    const a = new StaticAllocator(conf({ addresses: [{ address: '10.10.0.7/24', gateway: '10.10.0.1' }] }));
    expect((await rejects(a.check({ containerId: 'c', ifname: 'eth0' }))).message).toContain(
      'requires prevResult',
    );
    await a.check({
      containerId: 'c',
      ifname: 'eth0',
      prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.10.0.7/24', gateway: '10.10.0.1' }] },
    });
    const wrongGw = await rejects(
      a.check({
        containerId: 'c',
        ifname: 'eth0',
        prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.10.0.7/24', gateway: '10.10.0.254' }] },
      }),
    );
    expect(wrongGw.message).toContain('failed to match addr 10.10.0.7/24 on interface eth0: gateway');
    const missing = await rejects(
      a.check({
        containerId: 'c',
        ifname: 'eth0',
        prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.10.0.8/24' }] },
      }),
    );
    expect(missing.message).toContain('not in prevResult.ips');
  });
});
