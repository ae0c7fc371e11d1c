// The vrf binary against the real kernel, with both netlink engines, on a container interface made
// the way a bridge or ptp ADD leaves it (a veth end with an address and routes; its peer stays in
// the same netns, so no host links). Where the kernel has VRF (probed with supportedLinkKinds()):
// enslaving, routes moved into the VRF's table, CHECK, DEL. Where it has not (this machine): ADD
// fails saying so and the interface keeps its addresses and routes.
import { execFileSync } from 'node:child_process';
import { linuxNetlink } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { engineCaller } from '../helpers/engine-call.js';
import { TestNetnses } from '../helpers/netns.js';

const tag = `vri${process.pid % 100000}`;
let hasVrf = false;
const netnses = new TestNetnses();
let seq = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

/** A container netns with eth0 (a veth, peer in the same netns) addressed and routed, v4 and v6. */
function container(): { ns: string; path: string } {
  const ns = netnses.add(`${tag}-${++seq}`);
  const sh = (...a: string[]) => ip('-n', ns, ...a);
  sh('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
  sh('addr', 'add', '10.66.0.2/24', 'dev', 'eth0');
  sh('addr', 'add', 'fd66::2/64', 'dev', 'eth0', 'nodad');
  sh('link', 'set', 'peer0', 'up');
  sh('link', 'set', 'eth0', 'up');
  sh('route', 'add', 'default', 'via', '10.66.0.1', 'dev', 'eth0');
  sh('-6', 'route', 'add', 'default', 'via', 'fd66::1', 'dev', 'eth0');
  return { ns, path: `/var/run/netns/${ns}` };
}

const PREV = (path: string) => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: path }],
  ips: [
    { interface: 0, address: '10.66.0.2/24', gateway: '10.66.0.1' },
    { interface: 0, address: 'fd66::2/64', gateway: 'fd66::1' },
  ],
});

beforeAll(async () => {
  if (process.getuid?.() === 0) hasVrf = (await linuxNetlink().supportedLinkKinds()).has('vrf');
});
afterAll(() => {
  netnses.removeAll();
});

describe.each(['native', 'iproute2'] as const)('vrf binary (%s engine)', (engine) => {
  const run = engineCaller({
    type: 'vrf',
    engine,
    ifname: 'eth0',
    base: { cniVersion: '1.0.0', name: 'vrfnet', type: 'vrf', vrfname: 'blue' },
    containerId: () => `ctr${seq}`,
  });

  it('enslaves the interface, moves its routes into the VRF table; CHECK; DEL removes the VRF', (ctx) => {
    need(ctx);
    if (!hasVrf) ctx.skip('this kernel has no vrf link type (probed with supportedLinkKinds())');
    const c = container();
    const conf = { table: 1001, prevResult: PREV(c.path) };
    const add = run('ADD', c.path, conf);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const vrf = (
      JSON.parse(ip('-d', '-j', '-n', c.ns, 'link', 'show', 'blue')) as Array<Record<string, unknown>>
    )[0]!;
    expect(vrf).toMatchObject({ linkinfo: { info_kind: 'vrf', info_data: { table: 1001 } } });
    const eth0 = (JSON.parse(ip('-j', '-n', c.ns, 'link', 'show', 'eth0')) as Array<{ master?: string }>)[0]!;
    expect(eth0.master).toBe('blue');
    expect(ip('-n', c.ns, 'route', 'show', 'table', '1001')).toContain('default via 10.66.0.1 dev eth0');
    expect(ip('-n', c.ns, '-6', 'route', 'show', 'table', '1001')).toContain('default via fd66::1 dev eth0');
    expect(ip('-n', c.ns, 'route', 'show')).not.toContain('dev eth0');
    expect(ip('-n', c.ns, '-6', 'addr', 'show', 'dev', 'eth0')).toContain('fd66::2/64');
    expect(run('CHECK', c.path, conf).status).toBe(0);
    expect(run('DEL', c.path, { table: 1001 }).status).toBe(0);
    expect(ip('-n', c.ns, 'link', 'show')).not.toContain('blue');
    expect(run('DEL', c.path, { table: 1001 }).status).toBe(0);
  });

  it('where the kernel lacks VRF, ADD says so and the interface keeps its addresses and routes', (ctx) => {
    need(ctx);
    if (hasVrf) ctx.skip('this kernel has VRF; the full lifecycle runs instead');
    const c = container();
    const before = ip('-n', c.ns, 'route', 'show') + ip('-n', c.ns, '-6', 'route', 'show');
    const out = run('ADD', c.path, { prevResult: PREV(c.path) });
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({ code: 999, msg: expect.stringContaining('cannot create VRF devices') });
    expect((out.json as { details: string }).details).toContain('CONFIG_NET_VRF');
    expect(out.stderr).not.toMatch(/\n\s+at /);
    expect(ip('-n', c.ns, 'route', 'show') + ip('-n', c.ns, '-6', 'route', 'show')).toBe(before);
    expect(run('DEL', c.path, {}).status).toBe(0);
  });

  it('requires prevResult (code 7), and DEL succeeds with the netns gone', (ctx) => {
    need(ctx);
    const c = container();
    expect(run('ADD', c.path, {}).json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('prevResult'),
    });
    expect(run('DEL', '/var/run/netns/does-not-exist', {}).status).toBe(0);
  });
});
