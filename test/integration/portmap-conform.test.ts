// The conformance kit over our portmap (dist/bin), chained after the kit's prevResult fixture, with
// each backend: ADD, CHECK, DEL (twice, and with the netns gone), concurrent ADDs, and no state of
// a container left behind (the shared CNI-HOSTPORT-* chains and the cni_hostport tables' plumbing
// stay by design, as with the reference).
import { describe, expect, it } from 'vitest';
import {
  conform,
  expectAllPass,
  failures,
  need,
  ours,
  PREV_RESULT,
  passedIds,
  useConformSuite,
} from '../helpers/conform.js';

useConformSuite();

const portMappings = [
  { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
  { hostPort: 5353, containerPort: 53, protocol: 'udp' },
];

describe.concurrent('portmap (dist/bin) passes the conformance kit', () => {
  it('iptables backend, chained, at 0.4.0 and 1.1.0', async (ctx) => {
    need(ctx, ours('portmap'));
    const config = { type: 'portmap', backend: 'iptables', runtimeConfig: { portMappings } };
    const r = await conform(ours('portmap'), config, {
      versions: ['0.4.0', '1.1.0'],
      prevResult: PREV_RESULT,
    });
    expectAllPass(r, ['0.4.0', '1.1.0']);
  }, 120_000);

  // The kit lets shared iptables chains (CNI-HOSTPORT-*) and their container-free rules stay, but of
  // nftables only chains: the plumbing rules of the reference's cni_hostport tables (hook chains
  // jumping to hostports_all, and its two jumps), which name no container, show up as leftovers.
  // They stay by design, as with the reference; everything of the container itself goes.
  it('nftables backend, chained, at 1.1.0: only the shared table plumbing stays', async (ctx) => {
    need(ctx, ours('portmap'), '/usr/sbin/nft');
    const config = { type: 'portmap', backend: 'nftables', runtimeConfig: { portMappings } };
    const r = await conform(ours('portmap'), config, { versions: ['1.1.0'], prevResult: PREV_RESULT });
    const plumbing =
      /^node: rule nft ip6? cni_hostport chain (hostports_all: jump (hostip_hostports|hostports)|(prerouting|output): fib daddr type local jump hostports_all) left behind$/;
    for (const f of failures(r)) {
      expect(f).toMatch(/^leftovers(:\w+)?@1\.1\.0: /);
      for (const part of f.replace(/^[^ ]+ /, '').split('; ')) expect(part).toMatch(plumbing);
    }
    for (const check of ['add', 'check', 'del', 'del-twice', 'del-netns-gone', 'concurrent-add'])
      expect(passedIds(r)).toContain(`${check}@1.1.0`);
  }, 120_000);
});
