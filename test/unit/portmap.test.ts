// portmap in-process: config parsing (properties over mappings), the rules of both backends in the
// reference's layout, backend choice, ADD/CHECK/DEL/GC against a recording firewall-tool runner and
// the memory kernel (route_localnet), rollback of a failed ADD.
import { runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import type { IptablesRunner } from 'cni-kit/netsetup';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  dnatChainName,
  dnatComment,
  markDef,
  planIptables,
  restoreArg,
  restoreScript,
  splitPorts,
  splitSaved,
} from '../../examples/portmap/iptables.js';
import { nftScript } from '../../examples/portmap/nftables.js';
import { createPortmapPlugin, portmapConfig } from '../../examples/portmap/plugin.js';
import { containerAddresses, type PortmapRules } from '../../examples/portmap/rules.js';

const NS = '/var/run/netns/c1';
const CHAIN = 'CNI-DN-200274210e915d5940e1a'; // what Go's portmap 1.1.1 names ("pmnet", "ctrA")
const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'pmbr0' }, { name: 'veth1' }, { name: 'eth0', sandbox: NS }],
  ips: [
    { interface: 2, address: '10.99.0.2/24', gateway: '10.99.0.1' },
    { interface: 2, address: 'fd99::2/64', gateway: 'fd99::1' },
  ],
};
const MAPPINGS = [
  { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
  { hostPort: 8081, containerPort: 81, protocol: 'udp', hostIP: '192.0.2.1' },
];
const base = (extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: 'pmnet',
  type: 'portmap',
  runtimeConfig: { portMappings: MAPPINGS },
  prevResult,
  ...extra,
});

/** What Go's portmap leaves in the IPv4 nat table after ADD of base() (iptables-save, v1.8.9). */
const GO_SAVED_V4 = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:${CHAIN} - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A ${CHAIN} -s 10.99.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A ${CHAIN} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A ${CHAIN} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrA\\"" -m multiport --dports 8080 -j ${CHAIN}
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrA\\"" -m multiport --dports 8081 -j ${CHAIN}
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
`;
const EMPTY =
  '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n';

interface Call {
  cmd: string;
  args: readonly string[];
  stdin?: string | undefined;
}

type Reply = { code: number; stdout?: string; stderr?: string } | undefined;

/** A recording runner: `saved` is what iptables-save prints per family, `on` overrides a call. */
interface Tools {
  calls: Call[];
  saved: Record<4 | 6, string>;
  on: ((c: Call) => Reply) | undefined;
  runner: IptablesRunner;
  of(cmd: string): Call[];
}

function tools(): Tools {
  const t: Tools = {
    calls: [],
    saved: { 4: EMPTY, 6: EMPTY },
    on: undefined,
    runner: async (cmd, args, stdin) => {
      const c = { cmd, args, stdin };
      t.calls.push(c);
      const r = t.on?.(c);
      if (r) return { stdout: '', stderr: '', ...r };
      if (cmd.endsWith('-save'))
        return { code: 0, stdout: t.saved[cmd.startsWith('ip6') ? 6 : 4], stderr: '' };
      if (cmd === 'nft' && args[0] === '-j')
        return { code: 1, stdout: '', stderr: 'Error: No such file or directory' };
      if (cmd === 'conntrack') return { code: 127, stdout: '', stderr: 'spawn conntrack ENOENT' };
      return { code: 0, stdout: '', stderr: '' };
    },
    of: (cmd) => t.calls.filter((c) => c.cmd === cmd),
  };
  return t;
}

let nl: MemoryNetlink;
let fw: Tools;
beforeEach(async () => {
  nl = memoryNetlink({ hostLinks: [] });
  nl.addNetns(NS);
  await nl.inNetns(undefined, async (ns) => {
    ns.createLink({ kind: 'bridge', name: 'pmbr0' });
    ns.addAddress('pmbr0', '10.99.0.1/24');
    ns.setLink('pmbr0', { up: true });
  });
  fw = tools();
});

async function call(cmd: string, conf: object, cid = 'ctrA') {
  const env = { CNI_COMMAND: cmd, CNI_CONTAINERID: cid, CNI_NETNS: NS, CNI_IFNAME: 'eth0', CNI_PATH: '/x' };
  const out = await runPlugin(createPortmapPlugin({ netlink: nl, iptables: fw.runner }), {
    env,
    stdin: JSON.stringify(conf),
  });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const rules = (extra: Partial<PortmapRules> = {}): PortmapRules => ({
  network: 'pmnet',
  containerId: 'ctrA',
  mappings: [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { hostPort: 8081, containerPort: 81, protocol: 'udp', hostIP: '192.0.2.1' },
  ],
  snat: true,
  masqAll: false,
  markMasqBit: 13,
  ...extra,
});
const parse = (runtimeConfig: unknown, extra: object = {}) =>
  portmapConfig.parse({ runtimeConfig, ...extra });

describe('config', () => {
  const arbMapping = fc.record(
    {
      hostPort: fc.integer({ min: 1, max: 65535 }),
      containerPort: fc.integer({ min: 1, max: 65535 }),
      protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'TCP', 'Udp'),
      hostIP: fc.constantFrom('192.0.2.1', '0.0.0.0', '2001:db8::1', '::'),
    },
    { requiredKeys: ['hostPort', 'containerPort'] },
  );

  it('every valid mapping list parses, protocol lower-cased and tcp by default', () => {
    fc.assert(
      fc.property(fc.array(arbMapping, { maxLength: 20 }), (list) => {
        const c = parse({ portMappings: list });
        expect(c.runtimeConfig?.portMappings).toEqual(
          list.map((m) => ({
            hostPort: m.hostPort,
            containerPort: m.containerPort,
            protocol: (m.protocol ?? 'tcp').toLowerCase(),
            hostIP: m.hostIP,
          })),
        );
      }),
    );
  });

  it('a port outside 1..65535 anywhere in the list is refused, naming the entry and the field', () => {
    const bad = fc.oneof(
      fc.integer({ max: 0 }),
      fc.integer({ min: 65536 }),
      fc.constant(80.5),
      fc.constant('80'),
    );
    fc.assert(
      fc.property(
        fc.array(arbMapping, { maxLength: 5 }),
        fc.nat(5),
        fc.constantFrom('hostPort', 'containerPort'),
        bad,
        (list, at, field, value) => {
          const i = Math.min(at, list.length);
          const entry = { hostPort: 1, containerPort: 1, protocol: 'tcp', [field]: value };
          const r = portmapConfig.safeParse({
            runtimeConfig: { portMappings: [...list.slice(0, i), entry] },
          });
          expect(r.ok).toBe(false);
          if (!r.ok) {
            expect(r.issues[0]?.message).toContain(
              `runtimeConfig.portMappings[${i}].${field}: ${JSON.stringify(value)}`,
            );
            expect(r.issues[0]?.message).toMatch(/from 1 to 65535/);
          }
        },
      ),
    );
  });

  it('defaults as the reference: snat true, mark bit 13, masqAll false', () => {
    expect(parse(undefined)).toMatchObject({ snat: true, markMasqBit: 13, masqAll: false });
  });

  it('refuses an unknown protocol, a bad hostIP, mark bits outside 0..31 and mark bit with external chain', () => {
    expect(() => parse({ portMappings: [{ hostPort: 1, containerPort: 1, protocol: 'icmp' }] })).toThrow(
      /runtimeConfig.portMappings\[0\].protocol: "icmp" is not a protocol.*"tcp", "udp" or "sctp"/,
    );
    expect(() => parse({ portMappings: [{ hostPort: 1, containerPort: 1, hostIP: '10.0.0.300' }] })).toThrow(
      /portMappings\[0\].hostIP: "10.0.0.300" is not an IP address/,
    );
    expect(() => parse(undefined, { markMasqBit: 32 })).toThrow(
      /markMasqBit: 32 must be an integer from 0 to 31/,
    );
    expect(() => parse(undefined, { markMasqBit: 14, externalSetMarkChain: 'KUBE-MARK-MASQ' })).toThrow(
      /markMasqBit: 14 cannot be combined with externalSetMarkChain "KUBE-MARK-MASQ"/,
    );
  });
});

describe('iptables rules in the reference layout', () => {
  it('names the chain as Go does (CNI-DN- + sha512 of network + container ID, 28 characters)', () => {
    expect(dnatChainName('pmnet', 'ctrA')).toBe(CHAIN);
    fc.assert(
      fc.property(fc.string(), fc.string(), (n, c) => {
        expect(dnatChainName(n, c)).toMatch(/^CNI-DN-[0-9a-f]{21}$/);
      }),
    );
    expect(dnatComment('n', 'x'.repeat(300))).toHaveLength(256);
    expect(markDef(13)).toBe('0x2000/0x2000');
    expect(markDef(0)).toBe('0x1/0x1');
    expect(markDef(31)).toBe('0x80000000/0x80000000');
  });

  it('one restore for a fresh node: shared chains with -N, the container chain rebuilt, Go order', () => {
    const script = restoreScript(
      { chains: new Set(['PREROUTING', 'OUTPUT', 'POSTROUTING', 'INPUT']), rules: [] },
      planIptables(rules(), '10.99.0.2/24', 4),
    );
    const c = '-m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrA\\""';
    expect(script).toBe(
      [
        '*nat',
        `:${CHAIN} - [0:0]`,
        '-N CNI-HOSTPORT-SETMARK',
        '-N CNI-HOSTPORT-MASQ',
        '-N CNI-HOSTPORT-DNAT',
        '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
        '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
        '-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
        '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
        '-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
        `-A ${CHAIN} -p tcp --dport 8080 -s 10.99.0.2/24 -j CNI-HOSTPORT-SETMARK`,
        `-A ${CHAIN} -p tcp --dport 8080 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK`,
        `-A ${CHAIN} -p tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80`,
        `-A ${CHAIN} -p udp --dport 8081 -d 192.0.2.1 -s 10.99.0.2/24 -j CNI-HOSTPORT-SETMARK`,
        `-A ${CHAIN} -p udp --dport 8081 -d 192.0.2.1 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK`,
        `-A ${CHAIN} -p udp --dport 8081 -d 192.0.2.1 -j DNAT --to-destination 10.99.0.2:81`,
        `-A CNI-HOSTPORT-DNAT ${c} -m multiport -p tcp --destination-ports 8080 -j ${CHAIN}`,
        `-A CNI-HOSTPORT-DNAT ${c} -m multiport -p udp --destination-ports 8081 -j ${CHAIN}`,
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it("over Go's own rules: no shared chain or rule twice, the container's old jumps replaced", async () => {
    fw.saved[4] = GO_SAVED_V4;
    const r = await call('ADD', base({ prevResult: { ...prevResult, ips: prevResult.ips.slice(0, 1) } }));
    expect(r.exitCode).toBe(0);
    const script = fw.of('iptables-restore')[0]?.stdin ?? '';
    expect(script).not.toMatch(/-N |HOSTPORT-SETMARK -m comment|-j MASQUERADE|addrtype/);
    expect(script).toContain(`:${CHAIN} - [0:0]`);
    expect(script.match(new RegExp(`^-D CNI-HOSTPORT-DNAT .* -j ${CHAIN}$`, 'gm'))).toHaveLength(2);
    expect(script.match(new RegExp(`^-A CNI-HOSTPORT-DNAT .* -j ${CHAIN}$`, 'gm'))).toHaveLength(2);
  });

  it('IPv6: no localhost rule, [addr]:port targets, the IPv4 hostIP mapping skipped', () => {
    const plan = planIptables(rules(), 'fd99::2/64', 6);
    expect(plan.rules.map((r) => r.args.join(' '))).toEqual([
      '-p tcp --dport 8080 -s fd99::2/64 -j CNI-HOSTPORT-SETMARK',
      '-p tcp --dport 8080 -j DNAT --to-destination [fd99::2]:80',
    ]);
  });

  it('masqAll marks every source, snat false marks nothing, externalSetMarkChain replaces SETMARK', () => {
    const one = [{ hostPort: 1, containerPort: 2, protocol: 'tcp' as const }];
    const all = planIptables(rules({ mappings: one, masqAll: true }), '10.0.0.2/24', 4);
    expect(all.rules.map((r) => r.args.join(' '))).toEqual([
      '-p tcp --dport 1 -s 0.0.0.0/0 -j CNI-HOSTPORT-SETMARK',
      '-p tcp --dport 1 -j DNAT --to-destination 10.0.0.2:2',
    ]);
    const none = planIptables(rules({ mappings: one, snat: false }), '10.0.0.2/24', 4);
    expect(none.rules).toHaveLength(1);
    expect(none.shared.map((s) => s.chain)).toEqual(['CNI-HOSTPORT-DNAT']);
    const ext = planIptables(
      rules({ mappings: one, externalSetMarkChain: 'KUBE-MARK-MASQ' }),
      '10.0.0.2/24',
      4,
    );
    expect(ext.rules[0]?.args.slice(-2)).toEqual(['-j', 'KUBE-MARK-MASQ']);
    expect(ext.shared.map((s) => s.chain)).toEqual(['CNI-HOSTPORT-DNAT']);
  });

  it('conditions go on the entry rules; ports split by 15 per protocol (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), { maxLength: 40 }), (ports) => {
        const mappings = ports.map((p, i) => ({
          hostPort: p,
          containerPort: 80,
          protocol: (i % 2 ? 'udp' : 'tcp') as 'tcp' | 'udp',
        }));
        const plan = planIptables(rules({ mappings, conditionsV4: ['-s', '10.0.0.0/8'] }), '10.0.0.2/24', 4);
        const listed = plan.entries.flatMap((e) => {
          expect(e.args.slice(-4)).toEqual(['-s', '10.0.0.0/8', '-j', plan.dnatChain]);
          const list = e.args[e.args.indexOf('--destination-ports') + 1] ?? '';
          expect(list.split(',').length).toBeLessThanOrEqual(15);
          return list.split(',').map(Number);
        });
        expect(listed.sort()).toEqual([...ports].sort());
        expect(plan.rules.filter((r) => r.args.includes('DNAT'))).toHaveLength(ports.length);
        expect(splitPorts(ports).join(',')).toBe(ports.join(','));
      }),
    );
  });

  it('restore quoting round-trips through the iptables-save splitter (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ minLength: 1 }).filter((s) => !/[\n\r]/.test(s)),
          { maxLength: 6 },
        ),
        (args) => {
          expect(splitSaved(args.map(restoreArg).join(' '))).toEqual(args);
        },
      ),
    );
  });
});

describe('nftables rules in the reference layout', () => {
  it('per family table cni_hostport, hook chains with conditions, rules commented with the container ID', () => {
    const s = nftScript(rules({ conditionsV4: ['ip saddr != 10.9.0.0/16'] }), '10.99.0.2/24', 4, [
      { chain: 'hostports', handle: 7, comment: 'ctrA' },
    ]);
    expect(s).toContain('add table ip cni_hostport { comment "CNI portmap plugin" ; }');
    expect(s).toContain('add chain ip cni_hostport prerouting { type nat hook prerouting priority -100 ; }');
    expect(s).toContain(
      'add rule ip cni_hostport prerouting ip saddr != 10.9.0.0/16 fib daddr type local jump hostports_all',
    );
    expect(s).toContain('delete rule ip cni_hostport hostports handle 7');
    expect(s).toContain(
      'add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.0.2:80 comment "ctrA"',
    );
    expect(s).toContain(
      'add rule ip cni_hostport hostports ip daddr 192.0.2.1 udp dport 8081 dnat to 10.99.0.2:81 comment "ctrA"',
    );
    expect(s).toContain(
      'add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.0.2 masquerade comment "ctrA"',
    );
    const v6 = nftScript(rules({ masqAll: true }), 'fd99::2/64', 6, []);
    expect(v6).toContain(
      'add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd99::2]:80 comment "ctrA"',
    );
    expect(v6).not.toContain('8081');
    expect(v6).toContain('ip6 saddr ::/0 ip6 daddr fd99::2 masquerade');
  });
});

describe('ADD, CHECK, DEL, GC', () => {
  it('ADD: one save and one restore per family, passes prevResult through, sets route_localnet', async () => {
    const r = await call('ADD', base());
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual(prevResult);
    expect(fw.calls.map((c) => c.cmd)).toEqual([
      'iptables', // backend probe
      'iptables-save',
      'iptables-restore',
      'conntrack',
      'ip6tables-save',
      'ip6tables-restore',
    ]);
    expect(await nl.inNetns(undefined, (ns) => ns.getSysctl('net/ipv4/conf/pmbr0/route_localnet'))).toBe('1');
    expect(r.stderr).toContain('conntrack is not installed');
  });

  it('ADD without mappings passes prevResult through and touches nothing; without prevResult is code 7', async () => {
    const r = await call('ADD', base({ runtimeConfig: {} }));
    expect(r.json).toEqual(prevResult);
    expect(fw.calls).toEqual([]);
    const { prevResult: _p, ...noPrev } = base();
    const e = await call('ADD', noPrev);
    expect(e.exitCode).not.toBe(0);
    expect(e.json).toMatchObject({
      code: 7,
      msg: expect.stringMatching(/^prevResult: missing; portmap must run chained/),
    });
  });

  it('a failed IPv6 restore rolls back the IPv4 rules already installed', async () => {
    fw.on = (c) => {
      if (c.cmd === 'iptables-restore' && c.stdin?.includes(':CNI-DN')) fw.saved[4] = GO_SAVED_V4;
      if (c.cmd === 'ip6tables-restore') return { code: 2, stderr: 'ip6tables-restore: line 5 failed' };
      return undefined;
    };
    const r = await call('ADD', base());
    expect(r.json).toMatchObject({
      code: 999,
      msg: expect.stringContaining('ip6tables-restore failed (exit 2)'),
    });
    const undo = fw.of('iptables-restore').at(-1)?.stdin ?? '';
    expect(undo).toContain(`-F ${CHAIN}`);
    expect(undo).toContain(`-X ${CHAIN}`);
    expect(undo.match(/^-D CNI-HOSTPORT-DNAT /gm)).toHaveLength(2);
  });

  it('a failed route_localnet write rolls back the rules and names the sysctl', async () => {
    const failing = memoryNetlink({
      hostLinks: [],
      beforeOp: (op) => {
        if (op.includes('route_localnet')) throw new Error('permission denied');
      },
    });
    failing.addNetns(NS);
    await failing.inNetns(undefined, async (ns) => {
      ns.createLink({ kind: 'bridge', name: 'pmbr0' });
      ns.addAddress('pmbr0', '10.99.0.1/24');
      ns.setLink('pmbr0', { up: true });
    });
    nl = failing;
    fw.on = (c) => {
      if (c.cmd === 'iptables-restore' && c.stdin?.includes(':CNI-DN')) fw.saved[4] = GO_SAVED_V4;
      return undefined;
    };
    const r = await call('ADD', base());
    expect(r.json).toMatchObject({
      code: 999,
      msg: expect.stringContaining('enabling net.ipv4.conf.pmbr0.route_localnet failed'),
    });
    expect(fw.of('ip6tables-restore')).toEqual([]);
    expect(fw.of('iptables-restore').at(-1)?.stdin).toContain(`-X ${CHAIN}`);
  });

  it('a concurrent ADD that created a shared chain first makes this one read again and retry', async () => {
    let n = 0;
    fw.on = (c) =>
      c.cmd === 'iptables-restore' && n++ === 0
        ? { code: 1, stderr: 'line 3 failed: Chain already exists.' }
        : undefined;
    const r = await call('ADD', base({ prevResult: { ...prevResult, ips: prevResult.ips.slice(0, 1) } }));
    expect(r.exitCode).toBe(0);
    expect(fw.of('iptables-save')).toHaveLength(2);
    expect(fw.of('iptables-restore')).toHaveLength(2);
  });

  it('picks the container address the reference does: the sandbox interface named CNI_IFNAME', () => {
    expect(
      containerAddresses(
        {
          cniVersion: '1.1.0',
          interfaces: [{ name: 'br0' }, { name: 'eth0', sandbox: NS }],
          ips: [
            { address: '10.0.0.1/24', interface: 0 },
            { address: '10.0.0.5/24', interface: 1 },
            { address: '10.0.0.6/24', interface: 1 },
            { address: '2001:db8::5/64' },
          ],
        },
        'eth0',
      ),
    ).toEqual({ 4: '10.0.0.5/24', 6: '2001:db8::5/64' });
  });

  it('backend: the default is iptables unless only nft works; options of the other backend are refused', async () => {
    fw.on = (c) => (c.cmd === 'iptables' ? { code: 127 } : undefined);
    const r = await call('ADD', base());
    expect(r.exitCode).toBe(0);
    expect(fw.of('nft').map((c) => c.args.join(' '))).toContain('-f -');
    fw = tools();
    const wrong = await call('ADD', base({ conditionsV4: ['ip saddr 10.0.0.0/8'] }));
    expect(wrong.json).toMatchObject({
      code: 7,
      msg: 'backend: "iptables" (the default here) is in use, but conditionsV4 is written for nftables',
      details: 'set "backend": "nftables", or write conditionsV4 for iptables',
    });
    const ext = await call(
      'ADD',
      base({ backend: 'nftables', externalSetMarkChain: 'X', conditionsV6: ['-s', '::1'] }),
    );
    expect(ext.json?.msg).toBe(
      'backend: "nftables" is in use, but externalSetMarkChain and conditionsV6 are written for iptables',
    );
    expect(fw.of('iptables-restore')).toEqual([]);
  });

  it('CHECK runs iptables -C for every rule and names the first one missing', async () => {
    expect((await call('CHECK', base())).exitCode).toBe(0);
    const checks = fw.of('iptables').filter((c) => c.args.includes('-C'));
    expect(checks).toHaveLength(6 + 2 + 5); // container chain, its entries, shared rules and jumps
    fw.on = (c) =>
      c.cmd === 'iptables' && c.args.includes('DNAT') ? { code: 1, stderr: 'Bad rule' } : undefined;
    const r = await call('CHECK', base());
    expect(r.json).toMatchObject({
      code: 999,
      msg: expect.stringMatching(
        /^CHECK: IPv4 nat rule missing: -A CNI-DN-.* -j DNAT --to-destination 10.99.0.2:80/,
      ),
    });
  });

  it('DEL: nothing without mappings; else removes the chain and its jumps; succeeds without iptables', async () => {
    const { prevResult: _p, ...noPrev } = base();
    expect((await call('DEL', { ...noPrev, runtimeConfig: {} })).exitCode).toBe(0);
    expect(fw.calls).toEqual([]);
    fw.saved[4] = GO_SAVED_V4;
    expect((await call('DEL', noPrev)).exitCode).toBe(0);
    const script = fw.of('iptables-restore')[0]?.stdin ?? '';
    expect(script.split('\n').filter((l) => l.startsWith('-'))).toEqual([
      `-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrA\\"" -m multiport --dports 8080 -j ${CHAIN}`,
      `-D CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrA\\"" -m multiport --dports 8081 -j ${CHAIN}`,
      `-F ${CHAIN}`,
      `-X ${CHAIN}`,
    ]);
    expect(fw.of('ip6tables-restore')).toEqual([]);
    fw = tools();
    fw.on = (c) => (c.cmd.startsWith('ip') ? { code: 127, stderr: 'ENOENT' } : undefined);
    expect((await call('DEL', noPrev)).exitCode).toBe(0);
  });

  it('DEL of the nft backend deletes the rules carrying the container ID, by handle', async () => {
    const table = (family: string) => ({
      nftables: [
        { table: { family, name: 'cni_hostport' } },
        { rule: { chain: 'hostports', handle: 4, comment: 'ctrA' } },
        { rule: { chain: 'hostports', handle: 5, comment: 'other' } },
        { rule: { chain: 'masquerading', handle: 9, comment: 'ctrA' } },
        { rule: { chain: 'prerouting', handle: 2 } },
      ],
    });
    fw.on = (c) =>
      c.cmd === 'nft' && c.args[0] === '-j'
        ? { code: 0, stdout: JSON.stringify(table(c.args[3] ?? '')) }
        : undefined;
    expect((await call('DEL', base({ backend: 'nftables' }))).exitCode).toBe(0);
    expect(
      fw
        .of('nft')
        .filter((c) => c.args[0] === '-f')
        .map((c) => c.stdin),
    ).toEqual([
      'delete rule ip cni_hostport hostports handle 4\ndelete rule ip cni_hostport masquerading handle 9\n',
      'delete rule ip6 cni_hostport hostports handle 4\ndelete rule ip6 cni_hostport masquerading handle 9\n',
    ]);
  });

  it('GC removes the chains of containers of this network that are not valid any more', async () => {
    fw.saved[4] = GO_SAVED_V4.replace(
      'COMMIT',
      `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"pmnet\\" id: \\"ctrB\\"" -m multiport --dports 9 -j ${dnatChainName('pmnet', 'ctrB')}\nCOMMIT`,
    );
    const { prevResult: _p, ...noPrev } = base();
    const gc = {
      ...noPrev,
      cniVersion: '1.1.0',
      'cni.dev/valid-attachments': [{ containerID: 'ctrB', ifname: 'eth0' }],
    };
    const r = await runPlugin(createPortmapPlugin({ netlink: nl, iptables: fw.runner }), {
      env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
      stdin: JSON.stringify(gc),
    });
    expect(r.exitCode).toBe(0);
    const scripts = fw.of('iptables-restore').map((c) => c.stdin ?? '');
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toContain(`-X ${CHAIN}`);
    expect(scripts[0]).not.toContain('ctrB');
  });
});
