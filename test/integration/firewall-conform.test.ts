// `cni-kit conform` against our firewall binary, chained after the kit's prevResult scaffold (a
// veth pair and an address per container): every check passes at 0.3.1 and 1.1.0, with both
// families in prevResult. Only the shared chains (CNI-FORWARD, CNI-ADMIN and their jumps) stay,
// which the kit's allowlist names as by-design leftovers.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
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

const DUAL = {
  ...PREV_RESULT,
  ips: [
    ...((PREV_RESULT.ips as object[]) ?? []),
    { address: 'fd00:211::10/64', gateway: 'fd00:211::1', interface: 1 },
  ],
};

describe.concurrent('our firewall (dist/bin) passes the conformance kit', () => {
  it('iptables backend, IPv4 and IPv6 addresses', async (ctx) => {
    need(ctx, ours('firewall'));
    const dataDir = freshDir('firewall');
    const r = await conform(
      ours('firewall'),
      { type: 'firewall', backend: 'iptables', dataDir },
      {
        versions: ['0.3.1', '1.1.0'],
        prevResult: DUAL,
      },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
    // DEL removed every attachment's record.
    expect(readdirSync(dataDir)).toEqual([]);
  }, 180_000);
});
