// The dummy binary against the real kernel, with both netlink engines. Where the kernel has dummy
// links (probed with supportedLinkKinds()), a full ADD/CHECK/DEL; where it has not (this machine),
// ADD must fail saying so, with nothing left behind: no link, no address held by IPAM.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linuxNetlink } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { engineCaller } from '../helpers/engine-call.js';
import { TestNetnses } from '../helpers/netns.js';

const tag = `dmi${process.pid % 100000}`;
let work: string;
let hasDummy = false;
const netnses = new TestNetnses();
let seq = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const names = (ns: string) =>
  (JSON.parse(ip('-j', '-n', ns, 'link', 'show')) as Array<{ ifname: string }>).map((l) => l.ifname);

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
}

function container(): { ns: string; path: string } {
  const ns = netnses.add(`${tag}-${++seq}`);
  return { ns, path: `/var/run/netns/${ns}` };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  if (process.getuid?.() === 0) hasDummy = (await linuxNetlink().supportedLinkKinds()).has('dummy');
});
afterAll(() => {
  netnses.removeAll();
  rmSync(work, { recursive: true, force: true });
});

describe.each(['native', 'iproute2'] as const)('dummy binary (%s engine)', (engine) => {
  const run = engineCaller({
    type: 'dummy',
    engine,
    ifname: 'dummy0',
    base: { cniVersion: '1.1.0', name: 'dmnet', type: 'dummy' },
    containerId: () => `ctr${seq}`,
  });

  it('ADD, CHECK and DEL where the kernel has dummy links', (ctx) => {
    need(ctx);
    if (!hasDummy) ctx.skip('this kernel has no dummy link type (probed with supportedLinkKinds())');
    const c = container();
    const ipam = { type: 'host-local', subnet: '10.75.0.0/24', dataDir: join(work, `a-${engine}`) };
    const add = run('ADD', c.path, { ipam });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const l = (
      JSON.parse(ip('-d', '-j', '-n', c.ns, 'link', 'show', 'dummy0')) as Array<Record<string, unknown>>
    )[0]!;
    expect(l).toMatchObject({ linkinfo: { info_kind: 'dummy' } });
    expect(l.flags).toContain('UP');
    expect(ip('-n', c.ns, 'addr', 'show', 'dummy0')).toContain('10.75.0.2/24');
    expect(run('CHECK', c.path, { ipam, prevResult: add.json }).status).toBe(0);
    expect(run('DEL', c.path, { ipam }).status).toBe(0);
    expect(names(c.ns)).toEqual(['lo']);
    expect(run('DEL', c.path, { ipam }).status).toBe(0);
  });

  it('where the kernel lacks dummy links, ADD says so and leaves no link and no address', (ctx) => {
    need(ctx);
    if (hasDummy) ctx.skip('this kernel has dummy links; the full lifecycle runs instead');
    const c = container();
    const dataDir = join(work, `b-${engine}`);
    const out = run('ADD', c.path, { ipam: { type: 'host-local', subnet: '10.76.0.0/24', dataDir } });
    expect(out.status).toBe(1);
    expect(out.json).toMatchObject({ code: 999, msg: expect.stringContaining('cannot create dummy links') });
    expect((out.json as { details: string }).details).toContain('CONFIG_DUMMY');
    expect(out.stderr).not.toMatch(/\n\s+at /);
    expect(names(c.ns)).toEqual(['lo']);
    // IPAM never ran: the link comes first.
    const held = existsSync(join(dataDir, 'dmnet')) ? readdirSync(join(dataDir, 'dmnet')) : [];
    expect(held.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))).toEqual([]);
  });

  it('refuses a config without ipam (code 7) and DEL succeeds with the netns gone', (ctx) => {
    need(ctx);
    const c = container();
    const out = run('ADD', c.path, {});
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam: missing') });
    expect(names(c.ns)).toEqual(['lo']);
    expect(run('DEL', '/var/run/netns/does-not-exist', {}).status).toBe(0);
  });
});
