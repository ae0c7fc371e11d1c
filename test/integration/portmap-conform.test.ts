// The conformance kit over our portmap (dist/bin), chained after the kit's prevResult fixture, with
// each backend: ADD, CHECK, DEL (twice, and with the netns gone), concurrent ADDs, and no state of
// a container left behind (the shared CNI-HOSTPORT-* chains and the cni_hostport tables' plumbing
// stay by design, as with the reference, and the kit's allowlist accepts both).
import { describe, it } from 'vitest';
import { conform, expectAllPass, need, ours, PREV_RESULT, useConformSuite } from '../helpers/conform.js';

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

  // The kit accepts the cni_hostport tables' plumbing (hook chains jumping to hostports_all, and
  // its two jumps), which names no container and stays by design, as with the reference; the
  // container's DNAT and masquerade rules must go.
  it('nftables backend, chained, at 1.1.0', async (ctx) => {
    need(ctx, ours('portmap'), '/usr/sbin/nft');
    const config = { type: 'portmap', backend: 'nftables', runtimeConfig: { portMappings } };
    const r = await conform(ours('portmap'), config, { versions: ['1.1.0'], prevResult: PREV_RESULT });
    expectAllPass(r, ['1.1.0']);
  }, 120_000);
});
