// Interop vectors from the real reference: Debian's Go `static` IPAM plugin is run at every
// cniVersion it supports with the same addresses, routes and DNS; its 1.0.0 output converted by
// us to each other version must equal (as JSON) what the Go plugin printed at that version.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type AnyResult, convertResult, parseResult } from 'cni-kit';
import { describe, expect, it } from 'vitest';

const STATIC = '/usr/lib/cni/static';
const haveGo = existsSync(STATIC);
const GO_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'];

// Scenarios whose conversion up from 0.2.0 must also give back Go's 0.4.0 output (nothing lost).
const LOSSLESS = new Set(['dual stack with routes and dns', 'ipv4 only, no gateway, no dns']);

const scenarios: Record<string, Record<string, unknown>> = {
  'dual stack with routes and dns': {
    addresses: [
      { address: '10.10.0.1/24', gateway: '10.10.0.254' },
      { address: '3ffe:ffff:0:1ff::1/64', gateway: '3ffe:ffff:0::1' },
    ],
    routes: [
      { dst: '0.0.0.0/0' },
      { dst: '192.168.0.0/16', gw: '10.10.5.1' },
      { dst: '3ffe:ffff:0:01ff::1/64' },
    ],
    dns: { nameservers: ['8.8.8.8'], domain: 'example.com', search: ['example.com'], options: ['ndots:2'] },
  },
  'ipv4 only, no gateway, no dns': {
    addresses: [{ address: '192.168.77.9/20' }],
  },
  'ipv6 only with a v4 route that must be dropped going down': {
    addresses: [{ address: 'fd00:1::9/64', gateway: 'fd00:1::1' }],
    routes: [{ dst: '::/0' }, { dst: '10.0.0.0/8' }],
  },
  // The Go static plugin refuses this below 0.3.0 (one address per family); we compare where it answers.
  'several addresses per family': {
    addresses: [
      { address: '10.1.0.5/16', gateway: '10.1.0.1' },
      { address: '10.2.0.5/16' },
      { address: 'fd00::5/64' },
      { address: 'fd01::5/64', gateway: 'fd01::1' },
    ],
    routes: [{ dst: '10.3.0.0/16', gw: '10.1.0.1' }],
  },
};

function runStatic(version: string, ipam: Record<string, unknown>): unknown {
  const conf = JSON.stringify({
    cniVersion: version,
    name: 'vec',
    type: 'static',
    ipam: { type: 'static', ...ipam },
  });
  const out = execFileSync(STATIC, [], {
    input: conf,
    env: {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'vectors',
      CNI_NETNS: '/proc/self/ns/net',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
    },
  });
  return JSON.parse(out.toString());
}

describe('result conversion matches the Go reference (static IPAM vectors)', () => {
  for (const [name, ipam] of Object.entries(scenarios)) {
    it(name, (ctx) => {
      if (!haveGo) ctx.skip(`${STATIC} is missing: install Debian's containernetworking-plugins`);
      const multi = (ipam.addresses as unknown[]).length > 2;
      const versions = multi ? GO_VERSIONS.filter((v) => v >= '0.3.0') : GO_VERSIONS;
      const go = Object.fromEntries(versions.map((v) => [v, runStatic(v, ipam)]));
      // every Go output parses with our schemas
      for (const v of versions) expect(parseResult(go[v]).cniVersion).toBe(v);
      const base = parseResult(go['1.0.0']) as AnyResult;
      for (const v of versions) {
        expect(convertResult(base, v), `1.0.0 -> ${v}`).toEqual(go[v]);
      }
      if (multi) {
        // where Go refuses, we convert lossily and keep the first address of each family
        const down = convertResult(base, '0.2.0') as { ip4?: { ip: string }; ip6?: { ip: string } };
        expect([down.ip4?.ip, down.ip6?.ip]).toEqual(['10.1.0.5/16', 'fd00::5/64']);
      }
      // and going up from the oldest family reaches what Go printed where nothing was lost
      if (LOSSLESS.has(name)) {
        expect(convertResult(parseResult(go['0.2.0']), '0.4.0')).toEqual(go['0.4.0']);
      }
    });
  }
});
