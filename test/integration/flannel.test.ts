// flannel: subnet.env parsing and the delegate it builds (unit + property), then ADD/DEL in a real
// netns with the Go bridge + host-local as the delegate.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CniError, type NetConf, runPlugin } from 'cni-kit';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { buildDelegate as build, flannelConfig, flannelPlugin } from '../../examples/flannel/plugin.js';
import { parseSubnetEnv, readSubnetEnv } from '../../examples/flannel/subnet-env.js';

const GO = '/usr/lib/cni';
const tag = `fln${process.pid % 100000}`;
const o2 = 100 + ((process.pid + 71) % 100);
let work = '';
const netnses: string[] = [];

const base = (over: Record<string, unknown> = {}): NetConf => ({
  cniVersion: '1.0.0',
  name: 'cbr0',
  type: 'flannel',
  subnetFile: '/x',
  dataDir: '/y',
  ...over,
});
// What the plugin does: its own fields parsed by its schema, the wire config beside them.
const buildDelegate = (config: NetConf, env: Parameters<typeof build>[2]) =>
  build(config, flannelConfig.parse(config), env);

describe('subnet.env and the delegate config', () => {
  it('a missing subnet.env is code 11 in words, not raw errno text (F17)', async () => {
    const missing = join(tmpdir(), `ck-flannel-missing-${process.pid}`, 'subnet.env');
    const err = await readSubnetEnv(missing).then(
      () => undefined,
      (e: unknown) => e as CniError,
    );
    expect(err?.code).toBe(11);
    expect(err?.message).toBe(
      `cannot open ${JSON.stringify(missing)}: no such file or directory (ENOENT); create it or fix the path in the config; flanneld writes it once it has a lease, check that it runs on this node`,
    );
  });

  it('builds bridge + host-local with the reference defaults, and delegate overrides win', () => {
    const env = parseSubnetEnv(
      '# written by flanneld\nFLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    expect(env).toEqual({ networks: ['10.244.0.0/16'], subnets: ['10.244.3.1/24'], mtu: 1450, ipMasq: true });
    expect(buildDelegate(base(), env)).toEqual({
      name: 'cbr0',
      cniVersion: '1.0.0',
      type: 'bridge',
      ipMasq: false,
      mtu: 1450,
      isGateway: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.244.3.0/24' }]],
        routes: [{ dst: '10.244.0.0/16' }],
      },
    });
    const d = buildDelegate(
      base({ delegate: { hairpinMode: true, isDefaultGateway: false, mtu: 1400 } }),
      env,
    );
    expect(d).toMatchObject({ hairpinMode: true, isDefaultGateway: false, mtu: 1400, isGateway: true });
  });

  it('refuses delegate fields flannel sets itself (name, ipam) and a non-string type, before writing anything', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), `${tag}-dd-`));
    try {
      for (const [delegate, field] of [
        [{ ipam: { type: 'static' } }, 'delegate.ipam'],
        [{ name: 'other' }, 'delegate.name'],
        [{ type: 5 }, 'delegate.type'],
      ] as const) {
        const r = await runPlugin(flannelPlugin(), {
          env: {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'c1',
            CNI_NETNS: '/none',
            CNI_IFNAME: 'eth0',
            CNI_PATH: '/none',
          },
          stdin: JSON.stringify(base({ dataDir, delegate })),
        });
        expect(r.exitCode).toBe(1);
        expect(JSON.parse(r.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining(field) });
      }
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('dual stack gives two ranges and two routes; bad files are refused naming the key', () => {
    const env = parseSubnetEnv(
      'FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_IPV6_NETWORK=fd00:1::/56\nFLANNEL_IPV6_SUBNET=fd00:1:0:5::1/64\n',
    );
    const d = buildDelegate(base(), env) as { ipam: { ranges: unknown; routes: unknown } };
    expect(d.ipam.ranges).toEqual([[{ subnet: '10.1.5.0/24' }], [{ subnet: 'fd00:1:0:5::/64' }]]);
    expect(d.ipam.routes).toEqual([{ dst: '10.1.0.0/16' }, { dst: 'fd00:1::/56' }]);
    expect(() => parseSubnetEnv('FLANNEL_NETWORK=10.1.0.0/16\n', 'f.env')).toThrow(
      /f.env: needs FLANNEL_NETWORK and FLANNEL_SUBNET/,
    );
    expect(() => parseSubnetEnv('FLANNEL_NETWORK=10.1.0.0/99\nFLANNEL_SUBNET=10.1.1.1/24')).toThrow(
      /FLANNEL_NETWORK=10.1.0.0\/99 is not a CIDR/,
    );
  });

  it('the host-local range is always the masked node subnet and contains the gateway address', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 8, max: 30 }), (addr, len) => {
        const d = buildDelegate(
          base(),
          parseSubnetEnv(`FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=${addr}/${len}\n`),
        );
        const subnet = (d.ipam as { ranges: Array<Array<{ subnet: string }>> }).ranges[0]?.[0]?.subnet ?? '';
        const [net = '', l] = subnet.split('/');
        expect(Number(l)).toBe(len);
        const toInt = (s: string) => s.split('.').reduce((a, b) => (a << 8n) | BigInt(b), 0n);
        const mask = ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - len)) - 1n);
        expect(toInt(net)).toBe(toInt(addr) & mask);
      }),
    );
  });
});

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  if (!existsSync(join(GO, 'bridge')) || !existsSync(join(GO, 'host-local')))
    return 'Go bridge/host-local missing';
  return undefined;
}
const need = (ctx: TestContext) => {
  const why = missing();
  if (why) ctx.skip(why);
};

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['link', 'del', `${tag}br`]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('flannel delegating to the Go bridge', () => {
  it('ADD keeps the delegate per container, DEL frees it and removes the file, repeated DEL succeeds', async (ctx) => {
    need(ctx);
    const ns = `${tag}-a`;
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
    netnses.push(ns);
    const subnetFile = join(work, 'subnet.env');
    writeFileSync(
      subnetFile,
      `FLANNEL_NETWORK=10.${o2}.0.0/16\nFLANNEL_SUBNET=10.${o2}.7.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n`,
    );
    const dataDir = join(work, 'flannel');
    const ipamDir = join(work, 'ipam');
    const conf = {
      cniVersion: '0.4.0',
      name: `${tag}net`,
      type: 'flannel',
      subnetFile,
      dataDir,
      delegate: { bridge: `${tag}br`, hairpinMode: true, isDefaultGateway: false },
      ipam: { dataDir: ipamDir },
    };
    const call = (command: string) =>
      runPlugin(flannelPlugin(), {
        env: {
          PATH: process.env.PATH,
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}c1`,
          CNI_NETNS: `/var/run/netns/${ns}`,
          CNI_IFNAME: 'eth0',
          CNI_PATH: GO,
        },
        stdin: JSON.stringify(conf),
      });
    const add = await call('ADD');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    const res = JSON.parse(add.stdout);
    expect(res.cniVersion).toBe('0.4.0');
    expect(res.ips[0].address).toMatch(new RegExp(`^10\\.${o2}\\.7\\.\\d+/24$`));
    expect(res.ips[0].gateway).toBe(`10.${o2}.7.1`);
    const routes = execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route'], { encoding: 'utf8' });
    expect(routes).toContain(`10.${o2}.0.0/16 via 10.${o2}.7.1 dev eth0`);
    expect(
      execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'show', 'eth0'], { encoding: 'utf8' }),
    ).toContain('mtu 1400');
    expect(existsSync(join(dataDir, `${tag}c1`))).toBe(true);

    // subnet.env may change or vanish before DEL (flanneld restarted): the kept config is used.
    rmSync(subnetFile);
    const del = await call('DEL');
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(existsSync(join(dataDir, `${tag}c1`))).toBe(false);
    const leases = readdirSync(join(ipamDir, `${tag}net`)).filter((f) => /^\d/.test(f));
    expect(leases).toEqual([]);
    expect((await call('DEL')).exitCode).toBe(0);
  });
});
