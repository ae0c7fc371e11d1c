// `cni-kit conform` against the dummy and tap binaries (dist/bin), kept out of conform-ours so each
// plugin family owns its cases. tap runs for real (this kernel has tun/tap); dummy runs where the
// kernel has the dummy link kind and otherwise skips saying so.
import { linuxNetlink } from 'cni-kit/netlink';
import { describe, it } from 'vitest';
import { conform, expectAllPass, hostLocal, need, ours, useConformSuite } from '../helpers/conform.js';

useConformSuite();

// The dummy case also runs in the kernel lane, where Node is several times slower under emulation:
// there it checks one version (the kind-specific part is the same at every version).
const inLane = process.env.CNI_KIT_IN_VM === '1';
const LANE_VERSIONS = inLane ? ['1.1.0'] : ['0.3.1', '1.1.0'];
const LANE_TIMEOUT = inLane ? 300_000 : 120_000;

const kinds = () => linuxNetlink().supportedLinkKinds();

describe.concurrent('dummy and tap (dist/bin) pass the conformance kit', () => {
  it('tap + host-local, multi-queue with an owner', async (ctx) => {
    need(ctx, ours('tap'));
    if (!(await kinds()).has('tap')) ctx.skip('this kernel has no tap link kind (no /dev/net/tun)');
    const config = { type: 'tap', multiQueue: true, owner: 0, group: 0, ipam: hostLocal('10.73.0.0/24') };
    expectAllPass(await conform(ours('tap'), config, { versions: ['0.3.1', '1.1.0'] }), ['0.3.1', '1.1.0']);
  }, 120_000);

  it(
    'dummy + host-local, where the kernel has dummy links',
    async (ctx) => {
      need(ctx, ours('dummy'));
      if (!(await kinds()).has('dummy')) ctx.skip('this kernel has no dummy link kind');
      const config = { type: 'dummy', ipam: hostLocal('10.74.0.0/24') };
      expectAllPass(await conform(ours('dummy'), config, { versions: LANE_VERSIONS }), LANE_VERSIONS);
    },
    LANE_TIMEOUT,
  );
});
