// host-device on the in-memory kernel: validation before anything moves, a failed ADD (at any step)
// returning the device exactly as it was (F2), DEL restoring it and never touching an interface the
// plugin did not move in.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink, type Netlink, NetlinkError } from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createHostDevicePlugin } from '../../examples/host-device/plugin.js';

const work = mkdtempSync(join(tmpdir(), `plugins-host-device-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const NS = '/var/run/netns/c1';
let nl: MemoryNetlink;
let n = 0;
const dataDir = () => join(work, `d${++n}`);

beforeEach(() => {
  nl = memoryNetlink({ hostLinks: ['ens5'] });
  nl.addNetns(NS);
});

/** ens5 given a state worth restoring: MTU, alias, addresses, a static route, up or down. */
async function dress(opts: { mtu?: number; alias?: string; up?: boolean; addrs?: string[] } = {}) {
  const { mtu = 9000, alias = 'uplink-b', up = true, addrs = ['192.0.2.5/24', '2001:db8::5/64'] } = opts;
  await nl.inNetns(undefined, (ns) => {
    ns.setLink('ens5', { mtu, alias, up });
    for (const a of addrs) ns.addAddress('ens5', a, { noDad: true });
  });
  if (up && addrs.includes('192.0.2.5/24'))
    await nl.inNetns(undefined, (ns) =>
      ns.addRoute({ dst: '198.51.100.0/24', gw: '192.0.2.1', dev: 'ens5' }),
    );
}

/** Everything about ens5 the plugin must give back, read from the host netns. */
async function hostView() {
  return nl.inNetns(undefined, async (ns) => {
    const l = await ns.findLink('ens5');
    if (!l) return undefined;
    const addrs = (await ns.addresses({ link: 'ens5' })).map((a) => a.cidr).sort();
    const routes = (await ns.routes({ dev: 'ens5' })).map((r) => `${r.dst} ${r.gw ?? ''}`).sort();
    return { name: l.name, mac: l.mac, mtu: l.mtu, up: l.up, alias: l.alias ?? '', addrs, routes };
  });
}

async function call(
  cmd: string,
  conf: object,
  opts: { ifname?: string; netns?: string; netlink?: Netlink; cid?: string } = {},
) {
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: opts.cid ?? 'ctr1',
    CNI_NETNS: opts.netns ?? NS,
    CNI_IFNAME: opts.ifname ?? 'net1',
    CNI_PATH: '/nonexistent',
  };
  const p = createHostDevicePlugin({ netlink: opts.netlink ?? nl, sysfs: join(work, 'nosys') });
  const out = await runPlugin(p, { env, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const conf = (extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: 'hd',
  type: 'host-device',
  device: 'ens5',
  dataDir: dataDir(),
  ...extra,
});
const files = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
const ctrLinks = () =>
  nl
    .inspect(NS)
    .links.map((l) => `${l.name}:${l.alias ?? ''}`)
    .sort();

describe('F2: nothing moves when ADD can tell it would fail', () => {
  it('CNI_IFNAME already in the container: code 4, the device untouched; DEL leaves both alone', async () => {
    await dress();
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'veth', name: 'net1', peerName: 'p1' }));
    const before = await hostView();
    const ctrBefore = ctrLinks();
    const c = conf();
    const out = await call('ADD', c);
    expect(out.json).toMatchObject({
      code: 4,
      msg: expect.stringContaining('CNI_IFNAME: "net1" already exists'),
    });
    expect(await hostView()).toEqual(before);
    expect(ctrLinks()).toEqual(ctrBefore);
    expect(files(c.dataDir)).toEqual([]);
    expect(nl.netnsPaths().sort()).toEqual(['/proc/1/ns/net', NS]);
    expect((await call('DEL', c)).exitCode).toBe(0);
    expect(await hostView()).toEqual(before);
    expect(ctrLinks()).toEqual(ctrBefore);
  });

  it('a CNI_NETNS that is not a netns, or the host netns itself: code 4, untouched', async () => {
    await dress();
    const before = await hostView();
    for (const netns of ['/tmp/not-a-netns', nl.hostNetns]) {
      const out = await call('ADD', conf(), { netns });
      expect(out.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_NETNS') });
      expect(await hostView()).toEqual(before);
    }
    const lo = await call('ADD', conf({ device: 'lo' }));
    expect(lo.json).toMatchObject({ code: 7, msg: expect.stringContaining('loopback') });
  });

  it('DEL never moves out an unrelated CNI_IFNAME (no alias, or an alias that is not the device)', async () => {
    await nl.inNetns(NS, (ns) => {
      ns.createLink({ kind: 'veth', name: 'net1', peerName: 'p1' });
      ns.setLink('net1', { alias: 'something-else' });
    });
    const ctrBefore = ctrLinks();
    expect((await call('DEL', conf())).exitCode).toBe(0);
    expect((await call('DEL', conf(), { ifname: 'lo' })).exitCode).toBe(0);
    expect(ctrLinks()).toEqual(ctrBefore);
  });
});

describe('F2: a failed ADD returns the device exactly as it was', () => {
  it('IPAM fails after the move: name, alias, MTU, up, addresses and routes come back', async () => {
    await dress();
    const before = await hostView();
    const c = conf({ ipam: { type: 'host-local' } });
    const out = await call('ADD', c);
    expect(out.exitCode).toBe(1);
    expect(await hostView()).toEqual(before);
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect(files(c.dataDir)).toEqual([]);
  });

  it('property: a netlink failure injected at any step of ADD leaves the device as it was', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.record({
          mtu: fc.integer({ min: 1280, max: 9000 }),
          up: fc.boolean(),
          alias: fc.constantFrom('', 'a1', 'uplink-x'),
        }),
        async (k, dev) => {
          nl = memoryNetlink({ hostLinks: ['ens5'] });
          nl.addNetns(NS);
          await dress({ ...dev, addrs: dev.up ? ['192.0.2.5/24', '2001:db8::5/64'] : ['192.0.2.5/24'] });
          const before = await hostView();
          let calls = 0;
          const failing: Netlink = {
            ...nl,
            inNetns: (path, fn) => {
              if (++calls === k)
                return Promise.reject(new NetlinkError('EIO', 'injected failure', path ?? 'host'));
              return nl.inNetns(path, fn);
            },
          };
          const c = conf({ ipam: { type: 'static', addresses: [{ address: '10.1.2.3/24' }] } });
          const out = await call('ADD', c, { netlink: failing });
          if (out.exitCode === 0) {
            // k fell after the last step: DEL must then give the device back just as well.
            expect((await call('DEL', c)).exitCode).toBe(0);
          }
          expect(await hostView()).toEqual(before);
          expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
          expect(files(c.dataDir)).toEqual([]);
          expect(nl.netnsPaths().sort()).toEqual(['/proc/1/ns/net', NS]);
        },
      ),
      { numRuns: 80 },
    );
  });
});

describe('DEL', () => {
  it('returns the device as it was before ADD, and is idempotent', async () => {
    await dress({ up: true, alias: 'orig' });
    const before = await hostView();
    const c = conf({ ipam: { type: 'static', addresses: [{ address: '10.1.2.3/24' }] } });
    const add = await call('ADD', c);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(nl.inspect(NS).links.find((l) => l.name === 'net1')).toMatchObject({ alias: 'ens5', up: true });
    expect((await call('CHECK', { ...c, prevResult: add.json })).exitCode).toBe(0);
    expect((await call('DEL', c)).exitCode).toBe(0);
    expect(await hostView()).toEqual(before);
    expect(files(c.dataDir)).toEqual([]);
    expect((await call('DEL', c)).exitCode).toBe(0);
  });

  it("without a state file (the reference's ADD), the alias brings it back down, alias cleared", async () => {
    // What the Go host-device leaves in the container: the device renamed, its host name in the alias.
    await nl.inNetns(undefined, (ns) => ns.moveLink('ens5', NS));
    await nl.inNetns(NS, (ns) => {
      ns.renameLink('ens5', 'net1');
      ns.setLink('net1', { alias: 'ens5', up: true });
    });
    expect((await call('DEL', conf())).exitCode).toBe(0);
    expect(await hostView()).toMatchObject({ name: 'ens5', up: false, alias: '' });
    expect(nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
  });

  it('finds the device in the temporary netns a killed ADD or DEL left it in, and removes that netns', async () => {
    await dress();
    const before = await hostView();
    const c = conf();
    expect((await call('ADD', c)).exitCode).toBe(0);
    // What a SIGKILL between the two moves of a DEL leaves: the device in the attachment's temp netns.
    const name = `cnikit-hd-${createHash('sha256').update('ctr1/net1').digest('hex').slice(0, 16)}`;
    const tmp = await nl.createNetns(name);
    await nl.inNetns(NS, (ns) => ns.moveLink('net1', tmp.path));
    // Renamed but not yet aliased: where a kill between the two steps of ADD leaves it.
    await nl.inNetns(tmp.path, (ns) => ns.setLink('net1', { alias: null }));
    // And the temp file of a killed state write.
    writeFileSync(join(c.dataDir, '.tmp.ctr1_net1.json.123.abc'), '{');
    expect((await call('DEL', c)).exitCode).toBe(0);
    expect(await hostView()).toEqual(before);
    expect(nl.netnsPaths().sort()).toEqual(['/proc/1/ns/net', NS]);
    expect(files(c.dataDir)).toEqual([]);
  });

  it('an IPAM DEL that fails does not keep the device from going home', async () => {
    await dress();
    const before = await hostView();
    const c = conf({ ipam: { type: 'static', addresses: [{ address: '10.1.2.3/24' }] } });
    expect((await call('ADD', c)).exitCode).toBe(0);
    const out = await call('DEL', { ...c, ipam: { type: 'no-such-ipam' } });
    expect(out.exitCode).toBe(1);
    expect(await hostView()).toEqual(before);
    expect(files(c.dataDir)).toEqual([]);
  });

  it('a 300-character container ID is refused with code 4 before anything moves; its DEL exits 0', async () => {
    await dress();
    const before = await hostView();
    const c = conf();
    const cid = 'c'.repeat(300);
    const add = await call('ADD', c, { cid });
    expect(add.json).toMatchObject({ code: 4, msg: expect.stringContaining('the limit is 110 bytes') });
    expect(await hostView()).toEqual(before);
    expect((await call('DEL', c, { cid })).exitCode).toBe(0);
    expect(files(c.dataDir)).toEqual([]);
  });

  it('when the host has taken the name meanwhile, DEL fails and keeps the device findable', async () => {
    const c = conf();
    expect((await call('ADD', c)).exitCode).toBe(0);
    await nl.inNetns(undefined, (ns) => ns.createLink({ kind: 'veth', name: 'ens5', peerName: 'x5' }));
    const out = await call('DEL', c);
    expect(out.json).toMatchObject({ msg: expect.stringContaining('free the name ens5') });
    expect(nl.inspect(NS).links.find((l) => l.name === 'net1')).toMatchObject({ alias: 'ens5' });
    await nl.inNetns(undefined, (ns) => ns.deleteLink('ens5'));
    expect((await call('DEL', c)).exitCode).toBe(0);
    expect(await hostView()).toMatchObject({ name: 'ens5' });
    expect(files(c.dataDir)).toEqual([]);
  });
});
