// bandwidth on the in-memory kernel: which limits apply (top level or runtimeConfig), validation with
// errors naming the field, the host veth found through the peer index, tbf/ifb/redirect as the
// reference lays them out, CHECK, rollback of a failed ADD and an idempotent DEL.
import { runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  bandwidthConfig,
  createBandwidthPlugin,
  ifbName,
  MAX_BURST_BITS,
  tbfDiffers,
  validBandwidth,
} from '../../examples/bandwidth/plugin.js';

const NS = '/var/run/netns/c1';
const IFB = ifbName('bw', 'ctr1');
let nl: MemoryNetlink;
let failOn: RegExp | undefined;

const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'vh0' }, { name: 'eth0', sandbox: NS }],
  ips: [{ address: '10.9.0.2/24', interface: 1 }],
};

beforeEach(async () => {
  failOn = undefined;
  nl = memoryNetlink({
    hostLinks: [],
    beforeOp: (what) => {
      if (failOn?.test(what)) throw Object.assign(new Error(`injected: ${what}`), { code: 'EIO' });
    },
  });
  nl.addNetns(NS);
  await nl.inNetns(undefined, (ns) => {
    ns.createLink({ kind: 'veth', name: 'vh0', peerName: 'eth0', peerNetns: NS, mtu: 1450 });
    ns.setLink('vh0', { up: true });
  });
});

async function call(cmd: string, conf: object, cid = 'ctr1') {
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: cid,
    CNI_NETNS: NS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/nonexistent',
  };
  const out = await runPlugin(createBandwidthPlugin({ netlink: nl }), { env, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const base = (extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: 'bw',
  type: 'bandwidth',
  prevResult,
  ...extra,
});
const limits = { ingressRate: 1_000_000, ingressBurst: 80_000, egressRate: 2_000_000, egressBurst: 160_000 };
const host = () =>
  nl.inNetns(undefined, async (ns) => ({
    links: (await ns.links()).filter((l) => l.name !== 'lo'),
    qdiscs: await ns.qdiscs(),
  }));

describe('ADD', () => {
  it('puts a tbf on the host veth (ingress) and an ifb with a tbf behind a redirect (egress)', async () => {
    const r = await call('ADD', base(limits));
    expect(r.exitCode).toBe(0);
    const { links, qdiscs } = await host();
    const ifb = links.find((l) => l.name === IFB);
    expect(ifb).toMatchObject({ kind: 'ifb', mtu: 1450, up: true, txqlen: 0 });
    expect(qdiscs).toEqual([
      {
        link: 'vh0',
        kind: 'tbf',
        handle: '1:',
        root: true,
        rateBytes: 125_000,
        burstBytes: 10_000,
        latencyUs: 25_000,
      },
      { link: 'vh0', kind: 'ingress', handle: 'ffff:', root: false },
      {
        link: IFB,
        kind: 'tbf',
        handle: '1:',
        root: true,
        rateBytes: 250_000,
        burstBytes: 20_000,
        latencyUs: 25_000,
      },
    ]);
    expect(await nl.inNetns(undefined, (ns) => ns.ingressRedirects('vh0'))).toEqual([IFB]);
    // The ifb joins the result's interfaces, with its MAC, as in the reference.
    expect(r.json.interfaces).toEqual([...prevResult.interfaces, { name: IFB, mac: ifb?.mac }]);
    expect(r.json.ips).toEqual([{ address: '10.9.0.2/24', interface: 1 }]);
    expect((await call('CHECK', base({ ...limits, prevResult: r.json }))).exitCode).toBe(0);
  });

  it('only ingress: no ifb; only egress: no root qdisc on the host veth', async () => {
    await call('ADD', base({ ingressRate: 8000, ingressBurst: 8000 }));
    let h = await host();
    expect(h.links.map((l) => l.name)).not.toContain(IFB);
    expect(h.qdiscs.map((q) => `${q.link}:${q.kind}`)).toEqual(['vh0:tbf']);
    // DEL takes our tbf off a veth that outlives it.
    await call('DEL', base());
    expect((await host()).qdiscs).toEqual([]);
    await call('ADD', base({ egressRate: 8000, egressBurst: 8000 }));
    h = await host();
    expect(h.qdiscs.map((q) => `${q.link}:${q.kind}`)).toEqual(['vh0:ingress', `${IFB}:tbf`]);
  });

  it('runtimeConfig.bandwidth applies when the top level sets no limit; the top level wins otherwise', async () => {
    const rc = { runtimeConfig: { bandwidth: { ingressRate: 16_000, ingressBurst: 16_000 } } };
    await call('ADD', base(rc));
    expect((await host()).qdiscs[0]).toMatchObject({ link: 'vh0', rateBytes: 2000 });
    expect(
      validBandwidth(bandwidthConfig.parse({ ingressRate: 800, ingressBurst: 800, ...rc })),
    ).toMatchObject({
      ingressRate: 800,
      path: '',
    });
  });

  it('nothing to shape: prevResult passes through untouched', async () => {
    const r = await call('ADD', base({ ingressRate: 0, egressRate: 0 }));
    expect(r.exitCode).toBe(0);
    expect(r.json.interfaces).toEqual(prevResult.interfaces);
    expect((await host()).qdiscs).toEqual([]);
  });

  it('a container interface that is not a veth, or a peer not in prevResult, is refused before any change', async () => {
    const notListed = await call(
      'ADD',
      base({ ...limits, prevResult: { ...prevResult, interfaces: [prevResult.interfaces[1]] } }),
    );
    expect(notListed.json).toMatchObject({ code: 999 });
    expect(notListed.json.msg).toMatch(/host end vh0 is not listed/);
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'bridge', name: 'br9' }));
    const r = await runPlugin(createBandwidthPlugin({ netlink: nl }), {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: NS, CNI_IFNAME: 'br9', CNI_PATH: '/x' },
      stdin: JSON.stringify(base(limits)),
    });
    expect(JSON.parse(r.stdout).msg).toMatch(/br9 is a bridge, so it has no veth peer/);
    expect((await host()).qdiscs).toEqual([]);
  });

  it('a failed step undoes the earlier ones: no ifb, no qdisc left', async () => {
    failOn = /set tbf qdisc .* on bwp/;
    const r = await call('ADD', base(limits));
    expect(r.exitCode).not.toBe(0);
    expect(r.json.msg).toMatch(/injected/);
    const { links, qdiscs } = await host();
    expect(links.map((l) => l.name)).toEqual(['vh0']);
    expect(qdiscs).toEqual([]);
  });

  it('prevResult is required (code 7 naming it)', async () => {
    const { prevResult: _p, ...noPrev } = base(limits);
    const r = await call('ADD', noPrev);
    expect(r.json).toMatchObject({ code: 7 });
    expect(r.json.msg).toMatch(/^prevResult: missing/);
  });
});

describe('validation: code 7 naming the field, the value and the fix', () => {
  const cases: Array<[object, RegExp]> = [
    [{ ingressRate: 1000 }, /^ingressBurst: unset while ingressRate is 1000; .*burst must be set/],
    [{ egressBurst: 1000 }, /^egressRate: unset while egressBurst is 1000; .*rate must be set/],
    [
      { ingressRate: 8000, ingressBurst: MAX_BURST_BITS + 1 },
      /^ingressBurst: \d+ is more than 4 GB.*use at most/,
    ],
    [{ egressRate: 7, egressBurst: 800 }, /^egressRate: 7 is less than one byte per second; use at least 8/],
    [{ egressRate: 800, egressBurst: 7 }, /^egressBurst: 7 is less than one byte; use at least 8/],
    [{ ingressRate: -1, ingressBurst: 8 }, /ingressRate/],
    [{ ingressRate: 'fast', ingressBurst: 8 }, /ingressRate/],
    [
      { runtimeConfig: { bandwidth: { ingressRate: 800 } } },
      /^runtimeConfig\.bandwidth\.ingressBurst: unset while runtimeConfig\.bandwidth\.ingressRate is 800/,
    ],
    [
      {
        ingressRate: 800,
        ingressBurst: 800,
        shapedSubnets: ['10.0.0.0/8'],
        unshapedSubnets: ['10.1.0.0/16'],
      },
      /^shapedSubnets: set together with unshapedSubnets; .*keep one of them/,
    ],
    [
      { ingressRate: 800, ingressBurst: 800, unshapedSubnets: ['10.1.0.0/16'] },
      /^unshapedSubnets: \["10\.1\.0\.0\/16"\] is not supported: .*removed in 1\.6\.0; remove unshapedSubnets/,
    ],
    [{ ingressRate: 800, ingressBurst: 800, shapedSubnets: ['nope'] }, /shapedSubnets\[0\].*CIDR/],
  ];
  for (const [extra, msg] of cases) {
    it(`${JSON.stringify(extra)}`, async () => {
      const r = await call('ADD', base(extra));
      expect(r.exitCode).not.toBe(0);
      expect(r.json).toMatchObject({ code: 7 });
      expect(r.json.msg).toMatch(msg);
      expect(r.stdout).not.toMatch(/at .*\.ts:\d+/);
      expect((await host()).qdiscs).toEqual([]);
    });
  }

  it('property: every rate/burst pair is accepted exactly when both are set (>= 8) or both unset', () => {
    fc.assert(
      fc.property(fc.nat(2 ** 40), fc.nat(MAX_BURST_BITS), (rate, burst) => {
        const ok = (rate === 0 && burst === 0) || (rate >= 8 && burst >= 8);
        let threw: unknown;
        try {
          validBandwidth(bandwidthConfig.parse({ egressRate: rate, egressBurst: burst }));
        } catch (e) {
          threw = e;
        }
        expect(threw === undefined).toBe(ok);
      }),
    );
  });
});

describe('CHECK', () => {
  it('reports a changed rate, a missing ifb and a missing redirect', async () => {
    const add = await call('ADD', base(limits));
    const prev = add.json;
    await nl.inNetns(undefined, (ns) =>
      ns.setTbf('vh0', { rateBits: 512_000, burstBytes: 10_000, latencyMs: 25 }),
    );
    let r = await call('CHECK', base({ ...limits, prevResult: prev }));
    expect(r.json.msg).toMatch(/vh0 tbf rate is 64000 B\/s, config says 125000 B\/s/);
    await nl.inNetns(undefined, (ns) =>
      ns.setTbf('vh0', { rateBits: 1_000_000, burstBytes: 10_000, latencyMs: 25 }),
    );
    await nl.inNetns(undefined, (ns) => ns.deleteQdisc('vh0', 'ingress'));
    r = await call('CHECK', base({ ...limits, prevResult: prev }));
    expect(r.json.msg).toMatch(/ingress of vh0 is not redirected to bwp/);
    await nl.inNetns(undefined, (ns) => ns.deleteLink(IFB));
    r = await call('CHECK', base({ ...limits, prevResult: prev }));
    expect(r.json.msg).toMatch(/ifb device bwp[0-9a-f]{12} does not exist/);
  });

  it('tbfDiffers allows the rounding of one scheduler tick, not more', () => {
    const q = { link: 'x', kind: 'tbf', handle: '1:', root: true, rateBytes: 125_000, burstBytes: 10_001 };
    expect(tbfDiffers(q, 'x', 1_000_000, 80_000)).toBe('');
    expect(tbfDiffers({ ...q, burstBytes: 10_100 }, 'x', 1_000_000, 80_000)).toMatch(/burst is 10100 B/);
    expect(tbfDiffers({ ...q, kind: 'htb' }, 'x', 1_000_000, 80_000)).toMatch(/root htb qdisc, not tbf/);
  });
});

describe('DEL', () => {
  it('removes the ifb and our qdiscs; a second DEL and a DEL without the netns succeed', async () => {
    const add = await call('ADD', base(limits));
    expect((await call('DEL', base({ prevResult: add.json }))).exitCode).toBe(0);
    const { links, qdiscs } = await host();
    expect(links.map((l) => l.name)).toEqual(['vh0']);
    expect(qdiscs).toEqual([]);
    expect((await call('DEL', base({ prevResult: add.json }))).exitCode).toBe(0);
    await nl.removeNetns(NS);
    expect((await call('DEL', base({ prevResult: add.json }))).exitCode).toBe(0);
  });

  it('DEL does not need valid limits (a config fixed after ADD still tears down)', async () => {
    await call('ADD', base(limits));
    const r = await call('DEL', base({ ingressRate: 5 }));
    expect(r.exitCode).toBe(0);
    expect((await host()).links.map((l) => l.name)).toEqual(['vh0']);
  });
});

describe('names', () => {
  it('the ifb is "bwp" + the first 12 hex digits of sha512(network + container ID), as the reference', () => {
    // Go's bandwidth 1.1.1 named the ifb of network "bwnet", container "c1" so (seen on a real run).
    expect(ifbName('bwnet', 'c1')).toBe('bwp459546d14214');
    expect(ifbName('bw', 'ctr1')).toMatch(/^bwp[0-9a-f]{12}$/);
  });
});
