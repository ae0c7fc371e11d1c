// Properties of the selection annotation parser (both forms round-trip through the formatter, bad
// input is refused with a code-7 error naming the problem) and of the network-status builder.

import { CniError } from 'cni-kit';
import {
  buildNetworkStatuses,
  formatNetworkSelection,
  type NetworkSelectionElement,
  parseNetworkSelection,
} from 'cni-kit/k8s';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const label = fc
  .tuple(
    fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'),
    fc.array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'), { maxLength: 20 }),
    fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'),
  )
  .map(([a, mid, z]) => (mid.length === 0 ? a : `${a}${mid.join('')}${z}`));
const ifname = fc.stringMatching(/^[a-zA-Z0-9_-]{1,15}$/).filter((s) => s !== '.' && s !== '..');
const ipv4 = fc.ipV4();
const mac = fc
  .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
  .map((b) => b.map((x) => x.toString(16).padStart(2, '0')).join(':'));

const simple = fc.record(
  { name: label, namespace: label, interface: ifname },
  { requiredKeys: ['name', 'namespace'] },
) as fc.Arbitrary<NetworkSelectionElement>;

const rich = fc.record(
  {
    name: label,
    namespace: label,
    interface: ifname,
    ips: fc.array(
      fc.tuple(ipv4, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`),
      { minLength: 1, maxLength: 3 },
    ),
    mac,
    portMappings: fc.array(
      fc.record({
        hostPort: fc.integer({ min: 1, max: 65535 }),
        containerPort: fc.integer({ min: 1, max: 65535 }),
        protocol: fc.constantFrom('tcp', 'udp', 'sctp'),
      }),
      { maxLength: 2 },
    ),
    bandwidth: fc.record({
      ingressRate: fc.integer({ min: 1, max: 1e9 }),
      egressRate: fc.integer({ min: 1, max: 1e9 }),
    }),
    'cni-args': fc.dictionary(
      fc.stringMatching(/^[a-z]{1,8}$/),
      fc.oneof(fc.string(), fc.integer(), fc.boolean()),
    ),
  },
  { requiredKeys: ['name', 'namespace'] },
) as fc.Arbitrary<NetworkSelectionElement>;

/** Lists whose explicit interface names are distinct, as the parser requires. */
const distinctIfs = (arb: fc.Arbitrary<NetworkSelectionElement>) =>
  fc.array(arb, { maxLength: 6 }).filter((els) => {
    const names = els.map((e) => e.interface).filter(Boolean);
    return new Set(names).size === names.length;
  });

function codeOf(f: () => unknown): number | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return (e as CniError).code;
  }
  return undefined;
}

describe('selection annotation', () => {
  it('comma form round-trips', () => {
    fc.assert(
      fc.property(distinctIfs(simple), (els) => {
        const text = formatNetworkSelection(els);
        expect(text.includes('[')).toBe(false);
        expect(parseNetworkSelection(text, 'podns')).toEqual(els);
      }),
    );
  });

  it('JSON form round-trips, whatever keys are set', () => {
    fc.assert(
      fc.property(distinctIfs(rich), (els) => {
        expect(parseNetworkSelection(formatNetworkSelection(els, 'json'), 'podns')).toEqual(els);
      }),
    );
  });

  it('elements without a namespace get the default one, in both forms', () => {
    fc.assert(
      fc.property(label, label, fc.option(ifname, { nil: undefined }), (name, ns, ifn) => {
        const comma = parseNetworkSelection(`  ${name}${ifn ? `@${ifn}` : ''} `, ns);
        const json = parseNetworkSelection(
          JSON.stringify([{ name, ...(ifn ? { interface: ifn } : {}) }]),
          ns,
        );
        const want = { name, namespace: ns, ...(ifn ? { interface: ifn } : {}) };
        expect(comma).toEqual([want]);
        expect(json).toEqual([want]);
      }),
    );
  });

  it('refuses names that are not DNS-1123 labels', () => {
    const bad = fc.oneof(
      label.map((l) => `${l.toUpperCase()}X`),
      label.map((l) => `-${l}`),
      label.map((l) => `${l}_x`),
      fc.constant('a'.repeat(64)),
    );
    fc.assert(
      fc.property(bad, fc.boolean(), (name, asJson) => {
        const text = asJson ? JSON.stringify([{ name }]) : `default/${name}`;
        expect(codeOf(() => parseNetworkSelection(text, 'default'))).toBe(7);
      }),
    );
  });

  it('refuses interface names over 15 characters and names with / : or spaces', () => {
    const bad = fc.oneof(
      fc.stringMatching(/^[a-z0-9]{16,30}$/),
      fc
        .tuple(fc.stringMatching(/^[a-z]{1,5}$/), fc.constantFrom(' ', ':', '\t'))
        .map(([a, b]) => `${a}${b}x`),
    );
    fc.assert(
      fc.property(label, bad, (name, ifn) => {
        expect(codeOf(() => parseNetworkSelection(JSON.stringify([{ name, interface: ifn }]), 'd'))).toBe(7);
        if (!/\s/.test(ifn)) expect(codeOf(() => parseNetworkSelection(`${name}@${ifn}`, 'd'))).toBe(7);
      }),
    );
    try {
      parseNetworkSelection('net@averyveryverylongname', 'd');
    } catch (e) {
      expect((e as Error).message).toMatch(/averyveryverylongname.*15 characters/);
    }
  });

  it('refuses two elements asking for the same interface', () => {
    fc.assert(
      fc.property(label, label, ifname, (a, b, ifn) => {
        expect(codeOf(() => parseNetworkSelection(`${a}@${ifn},${b}@${ifn}`, 'd'))).toBe(7);
      }),
    );
    expect(() => parseNetworkSelection('a@net1,b@net1', 'd')).toThrow(
      /elements 0 and 1 both request interface "net1"/,
    );
  });

  it('allows the same network twice without interfaces (each gets its own)', () => {
    expect(parseNetworkSelection('a,a', 'd')).toEqual([
      { name: 'a', namespace: 'd' },
      { name: 'a', namespace: 'd' },
    ]);
  });

  it('refuses malformed items and values with messages naming them', () => {
    const cases: Array<[string, RegExp]> = [
      ['a/b/c', /more than one '\/'/],
      ['a@b@c', /more than one '@'/],
      ['[{"name":"a","mac":"zz"}]', /networks\[0\]\.mac: "zz" is not a MAC address; use e\.g\./],
      ['[{"name":"a","ips":[]}]', /networks\[0\]\.ips: \[\] must have at least 1 item/],
      [
        '[{"name":"a","ips":["10.0.0.300"]}]',
        /networks\[0\]\.ips\[0\]: "10.0.0.300" is not an IP address or CIDR/,
      ],
      [
        '[{"name":"a","default-route":["10.0.0.1"]},{"name":"b","default-route":[]}]',
        /both carry default-route/,
      ],
      [
        '[{"name":"a","portMappings":[{"hostPort":0,"containerPort":80}]}]',
        /portMappings\[0\]\.hostPort: 0 must be an integer from 1 to 65535; use a port number/,
      ],
      ['[{"name":"a","bandwidth":{"ingressBurst":5}}]', /bandwidth\.ingressBurst: 5 needs ingressRate/],
      ['[{"name":"a","ips":["10.0.0.1"],"ipam-claim-reference":"c"}]', /cannot be combined with ips/],
      ['[{"name":"a","frobnicate":1}]', /networks\[0\]: unknown key "frobnicate"/],
      ['{"name":"a"}', /must be a list/],
      ['[{"namespace":"x"}]', /networks\[0\]\.name: missing/],
      ['[{"name":"a"', /not valid JSON/],
      ['[{"name":"A_b"}]', /networks\[0\]\.name: "A_b" is not a valid name; use at most 63 lower-case/],
    ];
    for (const [text, re] of cases) {
      expect(() => parseNetworkSelection(text, 'd'), text).toThrow(re);
    }
  });

  it('keeps vendor keys out and accepts the deprecated interfaceRequest', () => {
    expect(parseNetworkSelection('[{"name":"a","interfaceRequest":"foo","example.com/x":1}]', 'd')).toEqual([
      { name: 'a', namespace: 'd', interface: 'foo' },
    ]);
  });
});

describe('network-status', () => {
  const ipEntry = fc.record(
    {
      address: fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 32 })).map(([a, p]) => `${a}/${p}`),
      interface: fc.integer({ min: 0, max: 4 }),
    },
    { requiredKeys: ['address'] },
  );
  const iface = fc.record({
    name: ifname,
    sandbox: fc.option(fc.constant('/var/run/netns/x'), { nil: undefined }),
  });
  it('places IPs as multus does (all on a lone interface, else by sandbox index, host-side ones dropped) and marks one default entry for the default network', () => {
    fc.assert(
      fc.property(
        fc.array(iface, { maxLength: 4 }),
        fc.array(ipEntry, { maxLength: 6 }),
        fc.boolean(),
        (ifaces, ips, isDefault) => {
          const interfaces = ifaces.map((i) =>
            i.sandbox ? { name: i.name, sandbox: i.sandbox } : { name: i.name },
          );
          const st = buildNetworkStatuses('ns/n', { cniVersion: '1.1.0', interfaces, ips }, { isDefault });
          const sandboxed = interfaces.flatMap((i, idx) => ('sandbox' in i ? [idx] : []));
          const lone = interfaces.length === 1;
          expect(st.length).toBe(lone ? 1 : sandboxed.length);
          // An IP shows up when its interface is in the sandbox, or it has no index and there is an
          // entry to put it on; with a lone interface every IP does.
          const shown = ips.filter((i) =>
            lone ? true : i.interface === undefined ? sandboxed.length > 0 : sandboxed.includes(i.interface),
          );
          expect(st.flatMap((s) => s.ips ?? []).sort()).toEqual(
            shown.map((i) => i.address.split('/')[0]).sort(),
          );
          expect(st.filter((s) => s.default).length).toBe(isDefault && st.length > 0 ? 1 : 0);
          expect(st.every((s) => s.name === 'ns/n' && JSON.stringify(s.dns) === '{}')).toBe(true);
          expect(st.some((s) => 'default' in s && s.default !== true)).toBe(false);
        },
      ),
    );
  });
});
