// tuning on the in-memory kernel: a failed ADD undoes everything (F3), JSON null is "not set" (F4),
// the backup round-trips every value a link can hold (F5), args.cni overrides and the allowlist.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import {
  backupFile,
  createTuningPlugin,
  KERNEL_MAX_MTU,
  KERNEL_MAX_TXQLEN,
  parseBackup,
  tuningConfig,
  tuningRequest,
} from '../../examples/tuning/plugin.js';

const work = mkdtempSync(join(tmpdir(), `plugins-tuning-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const NS = '/var/run/netns/c1';
let nl: MemoryNetlink;
let dirs = 0;
const freshDir = () => join(work, `d${++dirs}`);
const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: NS }] };

beforeEach(async () => {
  nl = memoryNetlink({ hostLinks: [] });
  nl.addNetns(NS);
  await nl.inNetns(undefined, (ns) =>
    ns.createLink({ kind: 'veth', name: 'vh0', peerName: 'eth0', peerNetns: NS }),
  );
});

async function call(
  cmd: string,
  conf: object,
  opts: { ifname?: string; args?: string; allow?: string; cid?: string } = {},
) {
  const env: Record<string, string> = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: opts.cid ?? 'ctr1',
    CNI_NETNS: NS,
    CNI_IFNAME: opts.ifname ?? 'eth0',
    CNI_PATH: '/nonexistent',
  };
  if (opts.args) env.CNI_ARGS = opts.args;
  const p = createTuningPlugin({ netlink: nl, allowlistFile: opts.allow ?? join(work, 'no-allowlist') });
  const out = await runPlugin(p, { env, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const link = (name = 'eth0') => {
  const l = nl.inspect(NS).links.find((x) => x.name === name);
  if (!l) throw new Error(`${name} missing`);
  return { mac: l.mac, mtu: l.mtu, promisc: l.promisc, allmulti: l.allmulti, txqlen: l.txqlen };
};
const sysctl = (key: string) => nl.inNetns(NS, (ns) => ns.getSysctl(key));
const base = (extra: object = {}) => ({
  cniVersion: '1.0.0',
  name: 't',
  type: 'tuning',
  dataDir: freshDir(),
  prevResult,
  ...extra,
});

describe('F3: a failed ADD leaves nothing behind', () => {
  it('a bad sysctl value: earlier sysctls, link attributes and the backup are put back', async () => {
    const before = link();
    const arp = 'net/ipv4/conf/eth0/arp_notify';
    const arpBefore = await sysctl(arp);
    const conf = base({
      mtu: 1280,
      mac: 'c2:00:00:00:00:01',
      promisc: true,
      sysctl: { 'net.ipv4.conf.IFNAME.arp_notify': '1', 'net.ipv4.conf.IFNAME.arp_ignore': 'abc' },
    });
    const out = await call('ADD', conf);
    expect(out.exitCode).toBe(1);
    expect(out.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('net.ipv4.conf.IFNAME.arp_ignore'),
    });
    expect(out.json.msg).toContain('"abc"');
    expect(link()).toEqual(before);
    expect(await sysctl(arp)).toBe(arpBefore);
    expect(existsSync(backupFile(conf.dataDir, 'ctr1', 'eth0'))).toBe(false);

    // The retried ADD (fixed config) records the originals of everything it changes; DEL restores them.
    const fixed = { ...conf, sysctl: { 'net.ipv4.conf.IFNAME.arp_notify': '1' } };
    expect((await call('ADD', fixed)).exitCode).toBe(0);
    expect(link()).toMatchObject({ mtu: 1280, mac: 'c2:00:00:00:00:01', promisc: true });
    expect((await call('DEL', fixed)).exitCode).toBe(0);
    expect(link()).toEqual(before);
    expect(existsSync(backupFile(conf.dataDir, 'ctr1', 'eth0'))).toBe(false);
  });

  it('a sysctl this kernel lacks is refused before anything changes', async () => {
    const before = link();
    const conf = base({ mtu: 1280, sysctl: { 'net.ipv4.conf.IFNAME.no_such_knob': '1' } });
    const out = await call('ADD', conf);
    expect(out.json).toMatchObject({ code: 7, msg: expect.stringContaining('no_such_knob') });
    expect(link()).toEqual(before);
    expect(existsSync(conf.dataDir)).toBe(false);
  });

  it('a retried ADD that fails puts back the backup of the earlier ADD, unchanged', async () => {
    const before = link();
    const conf = base({ mtu: 1280 });
    expect((await call('ADD', conf)).exitCode).toBe(0);
    const file = backupFile(conf.dataDir, 'ctr1', 'eth0');
    const first = readFileSync(file, 'utf8');
    const bad = await call('ADD', {
      ...conf,
      promisc: true,
      sysctl: { 'net.ipv4.conf.eth0.arp_ignore': 'x' },
    });
    expect(bad.exitCode).toBe(1);
    expect(readFileSync(file, 'utf8')).toBe(first);
    expect(link()).toMatchObject({ mtu: 1280, promisc: before.promisc });
    // A retried ADD with more fields adds their originals to the earlier backup.
    expect((await call('ADD', { ...conf, promisc: true, txQLen: 7 })).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      mtu: before.mtu,
      promisc: false,
      txQLen: before.txqlen,
    });
    expect((await call('DEL', conf)).exitCode).toBe(0);
    expect(link()).toEqual(before);
  });
});

describe('F4: JSON null is "not set"', () => {
  const nullable = [
    'mac',
    'promisc',
    'mtu',
    'txQLen',
    'allmulti',
    'sysctl',
    'dataDir',
    'runtimeConfig',
    'args',
  ];
  it('every nullable field null: ADD changes nothing, CHECK and DEL pass', async () => {
    const before = link();
    const conf: Record<string, unknown> = base();
    for (const k of nullable) conf[k] = null;
    conf.dataDir = join(work, 'null-dir');
    const add = await call('ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect((await call('CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call('DEL', conf)).exitCode).toBe(0);
    expect(link()).toEqual(before);
    const argsNull = base({
      args: { cni: { mac: null, promisc: null, mtu: null, txQLen: null, allmulti: null, sysctl: null } },
      runtimeConfig: { mac: null },
    });
    const add2 = await call('ADD', argsNull);
    expect(add2.exitCode, add2.stdout).toBe(0);
    expect((await call('CHECK', { ...argsNull, prevResult: add2.json })).exitCode).toBe(0);
    expect((await call('DEL', argsNull)).exitCode).toBe(0);
    expect(link()).toEqual(before);
  });

  it('property: any mix of set and null fields; ADD, CHECK, DEL restore the link exactly', async () => {
    const field = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null, freq: 2 });
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            mtu: field(fc.integer({ min: 68, max: 9000 })),
            promisc: field(fc.boolean()),
            allmulti: field(fc.boolean()),
            txQLen: field(fc.integer({ min: 0, max: 100000 })),
            mac: field(fc.constantFrom('c2:00:00:00:00:07', '02:11:22:33:44:55')),
          },
          { requiredKeys: [] },
        ),
        fc.record(
          {
            mtu: field(fc.integer({ min: 68, max: 9000 })),
            promisc: field(fc.boolean()),
            allmulti: field(fc.boolean()),
            txQLen: field(fc.integer({ min: 0, max: 100000 })),
          },
          { requiredKeys: [] },
        ),
        async (own, cni) => {
          const before = link();
          const conf = base({ ...own, args: { cni } });
          const add = await call('ADD', conf);
          if (add.exitCode !== 0) throw new Error(add.stdout);
          const check = await call('CHECK', { ...conf, prevResult: add.json });
          if (check.exitCode !== 0) throw new Error(check.stdout);
          for (const k of ['mtu', 'promisc', 'allmulti', 'txQLen'] as const) {
            const want = cni[k] ?? own[k];
            const key = k === 'txQLen' ? 'txqlen' : k;
            if (want !== null && want !== undefined) expect(link()[key]).toBe(want);
          }
          expect((await call('DEL', conf)).exitCode).toBe(0);
          expect(link()).toEqual(before);
          expect(existsSync(backupFile(conf.dataDir, 'ctr1', 'eth0'))).toBe(false);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('F5: the backup round-trips every value the kernel holds', () => {
  it('parseBackup keeps MTU up to 2^31-1 and txqlen up to 2^32-1, drops the impossible', () => {
    const notes: string[] = [];
    expect(parseBackup(JSON.stringify({ mtu: 65536, txQLen: KERNEL_MAX_TXQLEN, promisc: false }))).toEqual({
      mtu: 65536,
      txQLen: KERNEL_MAX_TXQLEN,
      promisc: false,
    });
    expect(parseBackup(JSON.stringify({ mtu: KERNEL_MAX_MTU }))).toEqual({ mtu: KERNEL_MAX_MTU });
    expect(
      parseBackup(JSON.stringify({ mtu: KERNEL_MAX_MTU + 1, txQLen: -1, mac: 'zz', allmulti: 'yes' }), (m) =>
        notes.push(m),
      ),
    ).toEqual({});
    expect(notes).toHaveLength(4);
    expect(notes.join('\n')).toContain('mtu: 2147483648 is not a value a link can hold');
    // Go's own file (indented, mac and the flags) parses the same.
    expect(parseBackup('{\n "mac": "0a:00:00:00:00:01",\n "promisc": false,\n "allmulti": true\n}')).toEqual({
      mac: '0a:00:00:00:00:01',
      promisc: false,
      allmulti: true,
    });
  });

  it('tuning on lo: DEL restores every attribute it can and keeps the backup while one is left', async () => {
    await nl.inNetns(NS, (ns) => ns.setLink('lo', {}));
    const lo = () => link('lo');
    const before = lo();
    const conf = base({ mtu: 1500, promisc: true, txQLen: 5, prevResult: { cniVersion: '1.0.0' } });
    const add = await call('ADD', conf, { ifname: 'lo' });
    expect(add.exitCode, add.stdout).toBe(0);
    const file = backupFile(conf.dataDir, 'ctr1', 'lo');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      mtu: before.mtu,
      promisc: false,
      txQLen: 1000,
    });
    const del = await call('DEL', conf, { ifname: 'lo' });
    expect(del.exitCode).toBe(0);
    // promisc and txqlen come back even if the MTU cannot (they are separate requests).
    expect(lo()).toMatchObject({ promisc: false, txqlen: before.txqlen });
    expect(lo().mtu).toBe(before.mtu);
    expect(existsSync(file)).toBe(false);
  });
});

describe('args.cni overrides (the reference precedence)', () => {
  const parse = (c: object) => tuningConfig.parse({ cniVersion: '1.0.0', name: 't', type: 'tuning', ...c });
  it('args.cni wins over the config; mac: args.cni > runtimeConfig > CNI_ARGS > config', () => {
    const own = {
      mtu: 1400,
      promisc: true,
      allmulti: false,
      txQLen: 9,
      mac: '02:00:00:00:00:01',
      sysctl: { a: '1', b: '2' },
    };
    const cni = { mtu: 1300, promisc: false, allmulti: true, txQLen: 3, sysctl: { b: '3', c: '4' } };
    const raw = { ...own, args: { cni } };
    expect(tuningRequest(parse(raw), raw, [])).toEqual({
      sysctl: { a: '1', b: '3', c: '4' },
      link: { mac: '02:00:00:00:00:01', mtu: 1300, promisc: false, allmulti: true, txqlen: 3 },
    });
    const macs = (c: Record<string, unknown>, env: Array<[string, string]>) =>
      tuningRequest(parse(c), c, env).link.mac;
    const env: Array<[string, string]> = [['MAC', '02:00:00:00:00:0e']];
    expect(macs({ mac: '02:00:00:00:00:01' }, env)).toBe('02:00:00:00:00:0e');
    expect(macs({ mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:0f' } }, env)).toBe(
      '02:00:00:00:00:0f',
    );
    expect(
      macs(
        {
          mac: '02:00:00:00:00:01',
          runtimeConfig: { mac: '02:00:00:00:00:0f' },
          args: { cni: { mac: '02:00:00:00:00:0a' } },
        },
        env,
      ),
    ).toBe('02:00:00:00:00:0a');
    // An args.cni mtu of 0 clears the config's (0 means "leave it").
    const zero = { mtu: 1400, args: { cni: { mtu: 0 } } };
    expect(tuningRequest(parse(zero), zero, []).link.mtu).toBeUndefined();
  });

  it('applied end to end: sysctl, promisc, mtu, allmulti, txQLen from args.cni; bad values name args.cni', async () => {
    const conf = base({
      mtu: 1400,
      args: {
        cni: {
          sysctl: { 'net.ipv4.conf.IFNAME.arp_notify': '1' },
          promisc: true,
          mtu: 1300,
          allmulti: true,
          txQLen: 42,
        },
      },
    });
    const add = await call('ADD', conf);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(link()).toMatchObject({ mtu: 1300, promisc: true, allmulti: true, txqlen: 42 });
    expect(await sysctl('net/ipv4/conf/eth0/arp_notify')).toBe('1');
    expect((await call('CHECK', { ...conf, prevResult: add.json })).exitCode).toBe(0);
    expect((await call('DEL', conf)).exitCode).toBe(0);
    const bad = await call('ADD', base({ args: { cni: { mtu: 'big' } } }));
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringContaining('args.cni.mtu') });
  });
});

describe('sysctl allowlist', () => {
  it('refuses a key no line matches, naming the key and the file; args.cni keys too', async () => {
    const allow = join(work, 'allow.conf');
    writeFileSync(allow, '# comment\n\n^net\\.ipv4\\.conf\\.IFNAME\\.arp_.*\n');
    const before = link();
    const denied = await call('ADD', base({ mtu: 1300, sysctl: { 'net.ipv4.ip_forward': '1' } }), { allow });
    expect(denied.json).toMatchObject({ code: 7 });
    expect(denied.json.msg).toContain('"net.ipv4.ip_forward"');
    expect(denied.json.msg).toContain(allow);
    expect(link()).toEqual(before);
    const viaArgs = await call('ADD', base({ args: { cni: { sysctl: { 'net.core.somaxconn': '9' } } } }), {
      allow,
    });
    expect(viaArgs.json.msg).toContain('"net.core.somaxconn"');
    const ok = await call('ADD', base({ sysctl: { 'net.ipv4.conf.IFNAME.arp_ignore': '1' } }), { allow });
    expect(ok.exitCode, ok.stdout).toBe(0);
    writeFileSync(allow, '^net\\.(\n');
    const broken = await call('ADD', base({ sysctl: { 'net.ipv4.conf.IFNAME.arp_ignore': '1' } }), { allow });
    expect(broken.json).toMatchObject({
      code: 7,
      msg: expect.stringContaining('not a valid regular expression'),
    });
  });
});

describe('DEL after a killed ADD', () => {
  it('removes the temp file a killed backup write left, with or without the backup', async () => {
    const conf = base({ mtu: 1300 });
    mkdirSync(conf.dataDir, { recursive: true });
    const stray = join(conf.dataDir, '.tmp.ctr1_eth0.json.4242.beef');
    writeFileSync(stray, '{"mt');
    expect((await call('DEL', conf)).exitCode).toBe(0);
    expect(readdirSync(conf.dataDir)).toEqual([]);
  });
});

describe('long container IDs', () => {
  it('the longest ID the SDK takes (110 bytes) works; a 300-character one is refused with code 4 and changes nothing', async () => {
    const before = link();
    const conf = base({ mtu: 1300 });
    const cid = 'c'.repeat(110);
    expect((await call('ADD', conf, { cid })).exitCode).toBe(0);
    expect((await call('DEL', conf, { cid })).exitCode).toBe(0);
    expect(link()).toEqual(before);
    const long = 'c'.repeat(300);
    const add = await call('ADD', conf, { cid: long });
    expect(add.json).toMatchObject({ code: 4, msg: expect.stringContaining('the limit is 110 bytes') });
    expect(link()).toEqual(before);
    expect((await call('DEL', conf, { cid: long })).exitCode).toBe(0);
    expect(readdirSync(conf.dataDir)).toEqual([]);
  });
});

describe('backup file name', () => {
  it("is the reference's name, hashed only when too long for a file name", () => {
    expect(backupFile('/d', 'abc', 'eth0')).toBe('/d/abc_eth0.json');
    const long = 'x'.repeat(300);
    const f = backupFile('/d', long, 'eth0');
    expect(f).toMatch(/^\/d\/x+~[0-9a-f]{64}$/);
    expect(Buffer.byteLength(f.slice(3))).toBeLessThanOrEqual(255);
  });
});
