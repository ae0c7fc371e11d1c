// The kit's by-design allowlist against real plugins whose shared state it must accept: our
// firewall with ingressPolicy same-bridge leaves the CNI-ISOLATION-STAGE-1/-2 chains and their
// per-bridge rules (as the reference does: other containers may be on the bridge), and nothing of
// the container. (portmap's nftables plumbing is covered in portmap-conform.test.ts; the rules
// the allowlist must still refuse are in conform-kit.test.ts.)
import { describe, it } from 'vitest';
import {
  conform,
  expectAllPass,
  freshDir,
  need,
  ours,
  PREV_RESULT,
  useConformSuite,
} from '../helpers/conform.js';

useConformSuite();

describe.concurrent('the allowlist accepts the shared state of chained plugins', () => {
  it('firewall, ingressPolicy same-bridge: the isolation chains stay, every check passes', async (ctx) => {
    need(ctx, ours('firewall'));
    const config = {
      type: 'firewall',
      backend: 'iptables',
      ingressPolicy: 'same-bridge',
      dataDir: freshDir('fw'),
    };
    const r = await conform(ours('firewall'), config, { versions: ['1.1.0'], prevResult: PREV_RESULT });
    expectAllPass(r, ['1.1.0']);
  }, 180_000);
});
