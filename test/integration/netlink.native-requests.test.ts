// The native engine's link-creation requests, held to iproute2's byte for byte in meaning: for
// random link specs of every kind, the RTM_NEWLINK that `ip link add` (as the iproute2 engine words
// it) sends, captured with strace, and the one the native engine builds decode to the same
// attributes. This checks the kinds this machine's kernel lacks (vlan, ipvlan, dummy, vrf) too: ip
// sends its request before the kernel refuses it. (tun/tap devices are made with ioctls, not
// RTM_NEWLINK: test/integration/tap-plugin.test.ts compares those with `ip tuntap add`'s.)
import { execFileSync, spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipLines } from '../../src/netlink/linux/commands.js';
import { linkAdd } from '../../src/netlink/native/link.js';
import { NlAttrs } from '../../src/netlink/native/nlmsg.js';
import { checkSpec } from '../../src/netlink/normalize.js';
import type { LinkSpec } from '../../src/netlink/types.js';

const PID = process.pid;
const NS = `nlrq${PID}`;
const isRoot = process.getuid?.() === 0;
const hasStrace = spawnSync('strace', ['-V']).status === 0;
let parentIndex = 0;

beforeAll(() => {
  if (!isRoot || !hasStrace) return;
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'par0', 'type', 'veth', 'peer', 'name', 'par1']);
  parentIndex = JSON.parse(
    execFileSync('ip', ['-n', NS, '-j', 'link', 'show', 'par0'], { encoding: 'utf8' }),
  )[0].ifindex;
});
afterAll(() => {
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
});

interface Tree {
  [type: string]: string | Tree;
}

/**
 * An attribute region as a tree keyed by type (nested: IFLA_LINKINFO and IFLA_INFO_DATA; a veth's
 * VETH_INFO_PEER, which holds an ifinfomsg before its attributes), values as hex.
 */
function tree(buf: Buffer, start: number, veth: boolean, path = ''): Tree {
  const out: Tree = {};
  for (const { type, value } of new NlAttrs(buf, start).all) {
    const p = `${path}/${type}`;
    if (veth && p === '/18/2/1')
      out[type] = { hdr: value.subarray(0, 16).toString('hex'), ...tree(value, 16, veth, p) };
    else out[type] = p === '/18' || p === '/18/2' ? tree(value, 0, veth, p) : value.toString('hex');
  }
  return out;
}

/** The RTM_NEWLINK payload `ip` sends for the iproute2 engine's words for `spec`. */
function ipRequest(spec: LinkSpec): Buffer {
  const line = ipLines({ t: 'link-add', spec })[0]!;
  const r = spawnSync(
    'strace',
    ['-e', 'trace=sendmsg', '-xx', '-s', '65536', 'ip', '-n', NS, ...line.split(' ')],
    {
      encoding: 'utf8',
    },
  );
  const sends = r.stderr.split('\n').filter((l) => /nlmsg_type=0x10 /.test(l) && /0x600/.test(l));
  const hex = /\}, "((?:\\x[0-9a-f]{2})*)"\]/.exec(sends[sends.length - 1] ?? '')?.[1];
  if (!hex) throw new Error(`no RTM_NEWLINK captured for: ip ${line}\n${r.stderr.slice(-500)}`);
  spawnSync('ip', ['-n', NS, 'link', 'del', spec.name], { stdio: 'ignore' });
  return Buffer.from(hex.replace(/\\x/g, ''), 'hex');
}

const mac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => {
  b[0] = (b[0]! & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
});
const base = {
  name: fc.constantFrom('nk0', 'nk1'),
  mtu: fc.option(fc.integer({ min: 1280, max: 9000 }), { nil: undefined }),
  mac: fc.option(mac, { nil: undefined }),
};
const spec: fc.Arbitrary<LinkSpec> = fc.oneof(
  fc.record({
    ...base,
    kind: fc.constant('bridge' as const),
    vlanFiltering: fc.option(fc.boolean(), { nil: undefined }),
  }),
  fc.record({
    ...base,
    kind: fc.constant('veth' as const),
    peerName: fc.constant('nkp'),
    peerMac: fc.option(mac, { nil: undefined }),
    peerMtu: fc.option(fc.integer({ min: 1280, max: 9000 }), { nil: undefined }),
  }),
  fc.record({
    ...base,
    kind: fc.constant('macvlan' as const),
    parent: fc.constant('par0'),
    mode: fc.option(fc.constantFrom('bridge', 'private', 'vepa', 'passthru', 'source'), { nil: undefined }),
    bcQueueLen: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
  }),
  fc.record({
    ...base,
    kind: fc.constant('ipvlan' as const),
    parent: fc.constant('par0'),
    mode: fc.option(fc.constantFrom('l2', 'l3', 'l3s'), { nil: undefined }),
  }),
  fc.record({
    ...base,
    kind: fc.constant('vlan' as const),
    parent: fc.constant('par0'),
    vlanId: fc.integer({ min: 1, max: 4094 }),
  }),
  fc.record({
    ...base,
    kind: fc.constant('vxlan' as const),
    vni: fc.integer({ min: 1, max: 0xffffff }),
    parent: fc.option(fc.constant('par0'), { nil: undefined }),
    remote: fc.option(fc.constantFrom('10.9.8.7', 'fd00::7'), { nil: undefined }),
    port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    learning: fc.option(fc.boolean(), { nil: undefined }),
  }),
  fc.record({ ...base, kind: fc.constant('ifb' as const) }),
  fc.record({ ...base, kind: fc.constant('dummy' as const) }),
  fc.record({ ...base, kind: fc.constant('vrf' as const), table: fc.integer({ min: 1, max: 0xffffffff }) }),
);

describe('native link requests', () => {
  it('carry the same attributes as iproute2 sends for the same link, for every kind', (ctx) => {
    if (!isRoot) ctx.skip('needs root for a network namespace');
    if (!hasStrace) ctx.skip('strace is not installed (Debian package strace)');
    fc.assert(
      fc.property(spec, (raw) => {
        const s = checkSpec(raw);
        const ours = linkAdd(s, { parentIndex: 'parent' in s && s.parent ? parentIndex : undefined }).finish(
          0,
        );
        const theirs = ipRequest(s);
        // Header: ifinfomsg (16 bytes); then the attributes, compared as trees.
        expect(ours.subarray(16, 32).toString('hex')).toBe(theirs.subarray(0, 16).toString('hex'));
        expect(tree(ours, 32, s.kind === 'veth')).toEqual(tree(theirs, 16, s.kind === 'veth'));
      }),
      { numRuns: 40 },
    );
  });
});
