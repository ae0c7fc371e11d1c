// static IPAM: our binary and the Go one (/usr/lib/cni/static) give the same result for the same
// config, CNI_ARGS, args and runtimeConfig, across result versions; CHECK agrees too.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const GO = '/usr/lib/cni/static';
const OURS = fileURLToPath(new URL('../../dist/bin/static', import.meta.url));

function run(bin: string, command: string, conf: unknown, cniArgs = '') {
  const r = spawnSync(bin, [], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'st1',
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
      ...(cniArgs ? { CNI_ARGS: cniArgs } : {}),
    },
  });
  return { code: r.status, json: r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
}

const hasGo = existsSync(GO);
const v4 = fc
  .tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 254 }))
  .map(([a, b, c]) => `10.${a}.${b}.${c}`);
const v6 = fc
  .tuple(fc.nat(0xffff), fc.integer({ min: 1, max: 0xffff }))
  .map(([a, b]) => `fd00:${a.toString(16)}::${b.toString(16)}`);
const cidr = fc.oneof(
  fc.tuple(v4, fc.integer({ min: 8, max: 30 })).map(([a, p]) => `${a}/${p}`),
  fc.tuple(v6, fc.integer({ min: 48, max: 120 })).map(([a, p]) => `${a}/${p}`),
);

describe('static interop with the Go plugin', () => {
  it('property: same ADD output for random configs, CNI_ARGS, args.cni.ips and runtimeConfig.ips', (ctx) => {
    if (!hasGo) ctx.skip('Go static not installed at /usr/lib/cni/static');
    fc.assert(
      fc.property(
        fc.constantFrom('0.3.1', '0.4.0', '1.0.0'),
        fc.array(fc.record({ address: cidr, gateway: fc.option(v4, { nil: undefined }) }), {
          minLength: 1,
          maxLength: 3,
        }),
        fc.option(fc.array(cidr, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        fc.option(fc.array(cidr, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        fc.option(fc.array(cidr, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        (cniVersion, addresses, argIPs, cniIps, rcIps) => {
          // Go only accepts a gateway of the address's family, so keep the generated pairs valid.
          const addrs = addresses.map((a) =>
            a.gateway && !a.address.includes(':') ? a : { address: a.address },
          );
          const conf = {
            cniVersion,
            name: 'st',
            type: 'macvlan',
            ipam: {
              type: 'static',
              addresses: addrs,
              routes: [{ dst: '0.0.0.0/0' }],
              dns: { nameservers: ['10.0.0.53'] },
            },
            ...(cniIps ? { args: { cni: { ips: cniIps } } } : {}),
            ...(rcIps ? { runtimeConfig: { ips: rcIps } } : {}),
          };
          const args = argIPs ? `IgnoreUnknown=1;IP=${argIPs.join(',')}` : '';
          const go = run(GO, 'ADD', conf, args);
          const ours = run(OURS, 'ADD', conf, args);
          expect(ours.code).toBe(go.code);
          if (go.code === 0) expect(ours.json).toEqual(go.json);
        },
      ),
      { numRuns: 15 },
    );
  }, 120_000);

  it('CHECK agrees: the ADD result passes, a changed gateway fails in both', (ctx) => {
    if (!hasGo) ctx.skip('Go static not installed at /usr/lib/cni/static');
    const conf = {
      cniVersion: '1.0.0',
      name: 'st',
      type: 'macvlan',
      ipam: { type: 'static', addresses: [{ address: '10.10.0.7/24', gateway: '10.10.0.1' }] },
    };
    const prev = run(GO, 'ADD', conf).json;
    expect(run(GO, 'CHECK', { ...conf, prevResult: prev }).code).toBe(0);
    expect(run(OURS, 'CHECK', { ...conf, prevResult: prev }).code).toBe(0);
    const bad = {
      ...conf,
      prevResult: { ...prev, ips: [{ address: '10.10.0.7/24', gateway: '10.10.0.254' }] },
    };
    expect(run(GO, 'CHECK', bad).code).not.toBe(0);
    const ours = run(OURS, 'CHECK', bad);
    expect(ours.code).not.toBe(0);
    expect(String(ours.json?.msg)).toContain('failed to match addr 10.10.0.7/24');
  });
});
