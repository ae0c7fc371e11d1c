// Properties of the shared plugin lifecycle: the result layout attachmentResult builds from any IPAM
// result, and addWithRollback's undo order and failure logging for any sequence of steps.

import type { PluginContext, Result } from 'cni-kit';
import { addWithRollback, attachmentResult } from 'cni-kit/netsetup';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const octet = fc.integer({ min: 0, max: 255 });
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const ipConfig = fc.record(
  {
    address: fc.tuple(v4, fc.integer({ min: 8, max: 32 })).map(([ip, p]) => `${ip}/${p}`),
    gateway: v4,
    interface: fc.integer({ min: 0, max: 5 }),
  },
  { requiredKeys: ['address'] },
);
const dns = fc.record(
  { nameservers: fc.array(v4, { maxLength: 3 }), domain: fc.constantFrom('a.example', 'b.example') },
  { requiredKeys: [] },
);
const ipamResult: fc.Arbitrary<Result> = fc.record(
  {
    cniVersion: fc.constantFrom('0.4.0', '1.0.0', '1.1.0'),
    ips: fc.array(ipConfig, { maxLength: 4 }),
    routes: fc.array(
      fc.record({ dst: fc.constantFrom('0.0.0.0/0', '10.0.0.0/8'), gw: v4 }, { requiredKeys: ['dst'] }),
      { maxLength: 3 },
    ),
    dns,
    interfaces: fc.array(fc.record({ name: fc.constantFrom('x', 'y') }), { maxLength: 2 }),
  },
  { requiredKeys: ['cniVersion'] },
);

describe('plugin lifecycle properties', () => {
  it('attachmentResult: the plugin interfaces, every IPAM IP at `index`, IPAM routes, config DNS over IPAM DNS', () => {
    fc.assert(
      fc.property(
        fc.option(ipamResult, { nil: undefined }),
        fc.option(dns, { nil: undefined }),
        fc.integer({ min: 0, max: 2 }),
        (ipam, confDns, index) => {
          const interfaces = [{ name: 'br0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/ns' }];
          const r = attachmentResult(confDns ? { dns: confDns } : {}, ipam, interfaces, index);
          expect(r.cniVersion).toBe('1.1.0');
          expect(r.interfaces).toEqual(interfaces);
          if (!ipam) {
            expect(r.ips).toBeUndefined();
          } else {
            expect(r.ips?.map(({ interface: _i, ...rest }) => rest)).toEqual(
              (ipam.ips ?? []).map(({ interface: _i, ...rest }) => rest),
            );
            for (const ip of r.ips ?? []) expect(ip.interface).toBe(index);
            expect(r.routes).toEqual(ipam.routes);
          }
          const confHasDns = confDns !== undefined && Object.keys(confDns).length > 0;
          expect(r.dns).toEqual(confHasDns ? confDns : ipam?.dns);
        },
      ),
    );
  });

  it('addWithRollback runs every undo step newest first, logs each failing one, and rethrows the ADD error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { maxLength: 8 }), fc.boolean(), async (fails, addFails) => {
        const ran: number[] = [];
        const logs: string[] = [];
        const ctx = {
          config: { cniVersion: '1.1.0', name: 'n', type: 't' },
          log: (m: string) => logs.push(m),
        };
        const run = addWithRollback(ctx as unknown as PluginContext, 'prop', async (tx) => {
          for (const [i, fail] of fails.entries()) {
            tx.onRollback(async () => {
              ran.push(i);
              if (fail) throw new Error(`step ${i}`);
            });
          }
          if (addFails) throw new Error('add failed');
          return 'ok';
        });
        if (!addFails) {
          expect(await run).toBe('ok');
          expect(ran).toEqual([]);
          return;
        }
        await expect(run).rejects.toThrow('add failed');
        expect(ran).toEqual(fails.map((_, i) => i).reverse());
        expect(logs).toEqual(
          fails
            .map((fail, i) => (fail ? `prop: rollback after failed ADD: Error: step ${i}` : ''))
            .filter(Boolean)
            .reverse(),
        );
      }),
    );
  });
});
