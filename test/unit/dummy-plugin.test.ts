// dummy plugin logic on the in-memory netlink backend (this machine's kernel has no dummy links;
// the model has them), with in-process host-local IPAM.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginSpec } from 'cni-kit';
import { LINK_KINDS, type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createDummyPlugin } from '../../examples/dummy/plugin.js';
import { failingAtWrite, heldAddresses } from '../helpers/fault-netlink.js';
import { callInProcess } from '../helpers/plugin.js';

const dataDir = mkdtempSync(join(tmpdir(), `dummy-plugin-${process.pid}-`));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

let nl: MemoryNetlink;
const NS = '/var/run/netns/c1';
beforeEach(() => {
  nl = memoryNetlink();
  nl.addNetns(NS);
});

async function call(plugin: PluginSpec, cmd: string, conf: object, extra: Record<string, string> = {}) {
  return callInProcess(plugin, cmd, conf, { CNI_NETNS: NS, CNI_IFNAME: 'dummy0', ...extra });
}

const conf = (subnet = '10.91.0.0/24') => ({
  cniVersion: '1.1.0',
  name: 'dm',
  type: 'dummy',
  ipam: { type: 'host-local', subnet, dataDir, routes: [{ dst: '10.92.0.0/16' }] },
});
const names = () => nl.inspect(NS).links.map((l) => l.name);

describe('dummy', () => {
  it('ADD makes an addressed, up dummy link and returns it; CHECK passes; DEL twice succeeds', async () => {
    const p = createDummyPlugin({ netlink: nl });
    const add = await call(p, 'ADD', conf());
    expect(add.exitCode, add.stdout).toBe(0);
    expect(existsSync(join(dataDir, 'dm', '10.91.0.2'))).toBe(true);
    const link = nl.inspect(NS).links.find((l) => l.name === 'dummy0');
    expect(link).toMatchObject({ kind: 'dummy', up: true });
    expect(add.json.interfaces).toEqual([{ name: 'dummy0', mac: link?.mac, sandbox: NS }]);
    expect(add.json.ips).toEqual([{ interface: 0, address: '10.91.0.2/24', gateway: '10.91.0.1' }]);
    const addrs = await nl.inNetns(NS, (ns) => ns.addresses({ link: 'dummy0' }));
    expect(addrs.map((a) => a.cidr)).toEqual(['10.91.0.2/24']);
    expect(nl.inspect(NS).routes.map((r) => `${r.dst} ${r.gw ?? '-'}`)).toContain('10.92.0.0/16 10.91.0.1');
    expect((await call(p, 'CHECK', { ...conf(), prevResult: add.json })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf())).exitCode).toBe(0);
    expect(names()).toEqual(['lo']);
    expect((await call(p, 'DEL', conf())).exitCode).toBe(0);
    // The address went back to the pool.
    expect(existsSync(join(dataDir, 'dm', '10.91.0.2'))).toBe(false);
  });

  it('refuses a config without ipam with code 7 before touching anything', async () => {
    const p = createDummyPlugin({ netlink: nl });
    for (const ipam of [undefined, {}]) {
      const out = await call(p, 'ADD', { cniVersion: '1.0.0', name: 'dm', type: 'dummy', ipam });
      expect(out.exitCode).toBe(1);
      expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam: missing') });
      expect(out.json.details).toContain('"ipam"');
    }
    expect(names()).toEqual(['lo']);
  });

  it('undoes the link when IPAM fails, and the IPs when configuring fails', async () => {
    const p = createDummyPlugin({ netlink: nl });
    const bad = await call(p, 'ADD', { ...conf(), ipam: { type: 'host-local' } });
    expect(bad.exitCode).toBe(1);
    expect(names()).toEqual(['lo']);
    // A write failing after IPAM: the link and the address both go.
    const failing = memoryNetlink({
      beforeOp: (w) => {
        if (w.startsWith('add (ecmp) route')) throw new Error('injected route failure');
      },
    });
    failing.addNetns(NS);
    const p2 = createDummyPlugin({ netlink: failing });
    const out = await call(p2, 'ADD', conf('10.93.0.0/24'));
    expect(out.exitCode).toBe(1);
    expect(failing.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect(existsSync(join(dataDir, 'dm', '10.93.0.2'))).toBe(false);
  });

  it('names an existing CNI_IFNAME and leaves it alone', async () => {
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'bridge', name: 'dummy0' }));
    const p = createDummyPlugin({ netlink: nl });
    const out = await call(p, 'ADD', conf());
    expect(out.json).toMatchObject({ msg: expect.stringContaining('"dummy0" already exists') });
    expect(nl.inspect(NS).links.find((l) => l.name === 'dummy0')?.kind).toBe('bridge');
    // DEL does not delete an interface of another kind.
    expect((await call(p, 'DEL', conf())).exitCode).toBe(0);
    expect(names()).toContain('dummy0');
  });

  it('on a kernel without dummy links says which module is missing', async () => {
    const noDummy = memoryNetlink({ kinds: LINK_KINDS.filter((k) => k !== 'dummy') });
    noDummy.addNetns(NS);
    const out = await call(createDummyPlugin({ netlink: noDummy }), 'ADD', conf('10.94.0.0/24'));
    expect(out.exitCode).toBe(1);
    expect(out.json.msg).toContain('cannot create dummy links');
    expect(out.json.details).toContain('CONFIG_DUMMY');
  });

  it('CHECK fails on a down link, a missing link, a wrong kind and a missing prevResult', async () => {
    const p = createDummyPlugin({ netlink: nl });
    const add = await call(p, 'ADD', conf());
    const check = () => call(p, 'CHECK', { ...conf(), prevResult: add.json });
    await nl.inNetns(NS, (ns) => ns.setLink('dummy0', { up: false }));
    expect((await check()).json.msg).toContain('is down');
    await nl.inNetns(NS, (ns) => ns.deleteLink('dummy0'));
    expect((await check()).json.msg).toContain('missing');
    await nl.inNetns(NS, (ns) => ns.createLink({ kind: 'bridge', name: 'dummy0' }));
    expect((await check()).json.msg).toContain('not a dummy');
    const noPrev = await call(p, 'CHECK', conf());
    expect(noPrev.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult') });
  });

  it('DEL succeeds when the netns is gone, and STATUS passes through to IPAM', async () => {
    const p = createDummyPlugin({ netlink: nl });
    expect((await call(p, 'DEL', conf(), { CNI_NETNS: '/var/run/netns/gone' })).exitCode).toBe(0);
    expect((await call(p, 'DEL', conf(), { CNI_NETNS: '' })).exitCode).toBe(0);
    expect(
      (await call(p, 'STATUS', conf(), { CNI_CONTAINERID: '', CNI_IFNAME: '', CNI_NETNS: '' })).exitCode,
    ).toBe(0);
  });
});

describe('dummy ADD stopped at any write', () => {
  it('leaves no link and no address held, whatever write fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(10), fc.boolean(), async (failAt, v6) => {
        const failing = failingAtWrite(failAt);
        nl = failing.nl;
        nl.addNetns(NS);
        const ipamDir = mkdtempSync(join(dataDir, 'p-'));
        const subnet = v6 ? 'fd95::/64' : '10.95.0.0/24';
        const c = {
          ...conf(),
          ipam: {
            type: 'host-local',
            subnet,
            dataDir: ipamDir,
            routes: [{ dst: v6 ? '::/0' : '0.0.0.0/0' }],
          },
        };
        const out = await failing.armed(() => call(createDummyPlugin({ netlink: nl }), 'ADD', c));
        if (out.exitCode === 0) return;
        expect(out.stderr).not.toContain('rollback after failed ADD');
        expect(names()).toEqual(['lo']);
        expect(heldAddresses(ipamDir, 'dm')).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });
});
