// host-local in process: config sources, on-disk format, idempotency, rollback, GC, STATUS, CHECK.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CallInfo, CniError, type NetConf } from 'cni-kit';
import {
  createIpamFactory,
  HostLocalAllocator,
  type IpamExec,
  type IpamNetConf,
  type IpamPoolStatus,
} from 'cni-kit/ipam';
import { formatIP, parseIP } from 'cni-kit/spec';
import { afterAll, describe, expect, it } from 'vitest';
import { parseHostLocalConfig } from '../../src/ipam/host-local/config.js';

const root = mkdtempSync(join(tmpdir(), `cnikit-hl-unit-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function conf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): IpamNetConf {
  n++;
  return {
    cniVersion: '1.0.0',
    name: `net${n}`,
    type: 'bridge',
    ipam: { type: 'host-local', dataDir: root, ...ipam },
    ...extra,
  };
}

async function rejects(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected rejection');
}

describe('host-local config', () => {
  it('orders runtimeConfig.ipRanges, then the legacy range, then ranges', () => {
    const c = parseHostLocalConfig(
      conf(
        { subnet: '10.2.0.0/24', ranges: [[{ subnet: '10.3.0.0/24' }]] },
        { runtimeConfig: { ipRanges: [[{ subnet: '10.1.0.0/24' }]] } },
      ),
    );
    expect(c.rangeSets.map((s) => s[0]!.subnet.network)).toEqual([0x0a010000n, 0x0a020000n, 0x0a030000n]);
  });

  it('names the field and the fix in errors', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, 'ipam.ranges: no IP ranges specified'],
      [
        { ranges: [[{ subnet: '10.0.0.1/24' }]] },
        'ipam.ranges[0][0].subnet: "10.0.0.1/24" has host bits set',
      ],
      [{ ranges: [[{ subnet: '10.0.0.0/24' }], []] }, 'ipam.ranges[1]: empty range set'],
      [{ subnet: '10.0.0.0/32' }, 'ipam.subnet: "10.0.0.0/32" is too small'],
      [
        { ranges: [[{ subnet: '10.0.0.0/16' }], [{ subnet: '10.0.1.0/24' }]] },
        'range set 1 overlaps with range set 0',
      ],
      [{ ranges: 'x' }, 'ipam.ranges: "x" must be a list; use a list of range sets'],
      [{ subnet: '10.0.0.0/24', routes: [{ dst: '0.0.0.0' }] }, 'ipam.routes[0].dst'],
    ];
    for (const [ipam, msg] of cases) {
      let err: unknown;
      try {
        parseHostLocalConfig(conf(ipam));
      } catch (e) {
        err = e;
      }
      expect(err, msg).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(7);
      expect((err as CniError).message).toContain(msg);
    }
  });

  it('refuses two addresses per family below 0.3.0', () => {
    expect(() =>
      parseHostLocalConfig(
        conf({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.1.0.0/24' }]] }, { cniVersion: '0.2.0' }),
      ),
    ).toThrow(/does not support more than 1 address per family/);
  });
});

describe('host-local allocation', () => {
  it('writes the reference format: <ip> holding "id\\r\\nifname", last_reserved_ip.<set>, lock', async () => {
    const c = conf({
      ranges: [[{ subnet: '10.10.0.0/24' }], [{ subnet: 'fd10::/64' }]],
      routes: [{ dst: '0.0.0.0/0' }],
    });
    const a = new HostLocalAllocator(c);
    const r = await a.allocate({ containerId: 'ctr1', ifname: 'eth0' });
    expect(r).toEqual({
      cniVersion: '1.0.0',
      ips: [
        { address: '10.10.0.2/24', gateway: '10.10.0.1' },
        { address: 'fd10::2/64', gateway: 'fd10::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }],
    });
    const dir = join(root, c.name);
    expect(readFileSync(join(dir, '10.10.0.2'), 'utf8')).toBe('ctr1\r\neth0');
    expect(readFileSync(join(dir, 'fd10::2'), 'utf8')).toBe('ctr1\r\neth0');
    expect(readFileSync(join(dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.10.0.2');
    expect(readFileSync(join(dir, 'last_reserved_ip.1'), 'utf8')).toBe('fd10::2');
    expect(existsSync(join(dir, 'lock'))).toBe(true);
  });

  it('ADD is idempotent per (id, ifname); a new ifname gets a new address; DEL frees only its own', async () => {
    const a = new HostLocalAllocator(conf({ subnet: '10.11.0.0/24' }));
    const r1 = await a.allocate({ containerId: 'c', ifname: 'eth0' });
    expect(await a.allocate({ containerId: 'c', ifname: 'eth0' })).toEqual(r1);
    const r2 = await a.allocate({ containerId: 'c', ifname: 'net1' });
    expect(r2.ips![0]!.address).not.toBe(r1.ips![0]!.address);
    await a.release({ containerId: 'c', ifname: 'eth0' });
    await a.release({ containerId: 'c', ifname: 'eth0' }); // DEL twice is fine
    await a.release({ containerId: 'never', ifname: 'eth0' });
    expect(a.store.held({ containerId: 'c', ifname: 'net1' }).length).toBe(1);
    expect(a.store.held({ containerId: 'c', ifname: 'eth0' }).length).toBe(0);
  });

  it('round-robins: a released address is not handed out again until the set wraps', async () => {
    const a = new HostLocalAllocator(conf({ subnet: '10.12.0.0/29' })); // .2 .. .6
    const got: string[] = [];
    for (let i = 0; i < 5; i++)
      got.push((await a.allocate({ containerId: `c${i}`, ifname: 'eth0' })).ips![0]!.address);
    expect(got).toEqual(['10.12.0.2/29', '10.12.0.3/29', '10.12.0.4/29', '10.12.0.5/29', '10.12.0.6/29']);
    expect(readFileSync(join(a.store.dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.12.0.6');
    const e = await rejects(a.allocate({ containerId: 'c9', ifname: 'eth0' }));
    expect(e.message).toContain('no IP addresses available in range set: 10.12.0.1-10.12.0.6');
    await a.release({ containerId: 'c1', ifname: 'eth0' });
    expect((await a.allocate({ containerId: 'c9', ifname: 'eth0' })).ips![0]!.address).toBe('10.12.0.3/29');
    expect(readFileSync(join(a.store.dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.12.0.3');
    // The cursor is rewritten in place: a shorter address must not keep the old one's tail.
    const b = new HostLocalAllocator(conf({ subnet: '10.12.1.0/24' }));
    await b.allocate({ containerId: 'long', ifname: 'eth0', args: [['IP', '10.12.1.200']] });
    await b.allocate({ containerId: 'short', ifname: 'eth0', args: [['IP', '10.12.1.5']] });
    expect(readFileSync(join(b.store.dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.12.1.5');
    expect((await b.allocate({ containerId: 'next', ifname: 'eth0' })).ips![0]!.address).toBe('10.12.1.6/24');
  });

  it('honours requested IPs from CNI_ARGS, args.cni.ips and runtimeConfig.ips', async () => {
    const c = conf(
      { ranges: [[{ subnet: '10.13.0.0/24' }], [{ subnet: '10.14.0.0/24' }], [{ subnet: 'fd13::/64' }]] },
      { args: { cni: { ips: ['10.14.0.77'] } }, runtimeConfig: { ips: ['fd13::99/64'] } },
    );
    const r = await new HostLocalAllocator(c).allocate({
      containerId: 'c',
      ifname: 'eth0',
      args: [['IP', '10.13.0.50']],
    });
    expect(r.ips!.map((i) => i.address)).toEqual(['10.13.0.50/24', '10.14.0.77/24', 'fd13::99/64']);
  });

  it('refuses a requested gateway, a taken address, and leftovers, and rolls back', async () => {
    const c = conf({ ranges: [[{ subnet: '10.15.0.0/24' }], [{ subnet: '10.16.0.0/24' }]] });
    const a = new HostLocalAllocator(c);
    expect(
      (await rejects(a.allocate({ containerId: 'x', ifname: 'e', args: [['IP', '10.15.0.1']] }))).message,
    ).toContain('is the gateway');
    await a.allocate({ containerId: 'holder', ifname: 'eth0', args: [['IP', '10.16.0.9']] });
    const e = await rejects(a.allocate({ containerId: 'y', ifname: 'eth0', args: [['IP', '10.16.0.9']] }));
    expect(e.message).toContain('10.16.0.9 is not available');
    expect(e.message).toContain('container holder interface eth0');
    // the first set's address was taken before the second failed: it must be rolled back
    expect(a.store.held({ containerId: 'y', ifname: 'eth0' })).toEqual([]);
    const left = await rejects(
      new HostLocalAllocator({ ...c, args: { cni: { ips: ['10.99.0.1'] } } }).allocate({
        containerId: 'z',
        ifname: 'eth0',
      }),
    );
    expect(left.message).toContain('requested IPs 10.99.0.1 are not inside any range set');
    expect(a.store.held({ containerId: 'z', ifname: 'eth0' })).toEqual([]);
  });

  it('reads resolvConf into dns', async () => {
    const rc = join(root, 'resolv.conf');
    writeFileSync(
      rc,
      '# c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.com\nsearch a.example b.example\noptions ndots:2 edns0\nbad\n',
    );
    const r = await new HostLocalAllocator(conf({ subnet: '10.17.0.0/24', resolvConf: rc })).allocate({
      containerId: 'c',
      ifname: 'eth0',
    });
    expect(r.dns).toEqual({
      nameservers: ['10.0.0.53', 'fd00::53'],
      domain: 'example.com',
      search: ['a.example', 'b.example'],
      options: ['ndots:2', 'edns0'],
    });
  });

  it('releases legacy id-only files and finds files written without our index (Go-written)', async () => {
    const c = conf({ subnet: '10.18.0.0/24' });
    const a = new HostLocalAllocator(c);
    await a.allocate({ containerId: 'first', ifname: 'eth0' });
    const dir = join(root, c.name);
    writeFileSync(join(dir, '10.18.0.40'), 'legacy');
    writeFileSync(join(dir, '10.18.0.41'), 'goctr\r\neth0');
    await a.check({ containerId: 'goctr', ifname: 'eth0' });
    await a.release({ containerId: 'legacy', ifname: 'eth0' });
    await a.release({ containerId: 'goctr', ifname: 'eth0' });
    expect(existsSync(join(dir, '10.18.0.40'))).toBe(false);
    expect(existsSync(join(dir, '10.18.0.41'))).toBe(false);
  });

  it('recovers from a crash between creating an address file and settling the index', async () => {
    const c = conf({ subnet: '10.23.0.0/24' });
    const a = new HostLocalAllocator(c);
    const key = { containerId: 'crashed', ifname: 'eth0' };
    // The state a kill leaves right after link(2): an entry naming the address, and its file.
    a.store.writeEntry(key, [parseIP('10.23.0.9')]);
    await a.store.withLock(() => a.store.reserve(parseIP('10.23.0.9'), key, '0'));
    const r = await a.allocate(key);
    expect(r.ips!.map((i) => i.address)).toEqual(['10.23.0.9/24']);
    expect(a.store.scanFor(key).map((ip) => formatIP(ip))).toEqual(['10.23.0.9']);
    // A kill after the entry but before link(2): the named address has no file, so it is not held.
    const key3 = { containerId: 'crashed3', ifname: 'eth0' };
    a.store.writeEntry(key3, [parseIP('10.23.0.30')]);
    const r3 = await a.allocate(key3);
    expect(r3.ips![0]!.address).not.toBe('10.23.0.30/24');
    expect(a.store.scanFor(key3).length).toBe(1);
    // A kill before the entry was written at all is found by DEL's full scan.
    const key2 = { containerId: 'crashed2', ifname: 'eth0' };
    await a.store.withLock(() => a.store.reserve(parseIP('10.23.0.20'), key2, '0'));
    await a.release(key2);
    expect(a.store.isTaken(parseIP('10.23.0.20'))).toBe(false);
    // An entry naming a file someone else (the Go plugin's DEL) removed is not trusted.
    a.store.remove(parseIP('10.23.0.9'));
    await expect(a.check(key)).rejects.toThrow(/no address is held/);
  });

  it('CHECK fails for an unknown attachment and for a prevResult address it does not hold', async () => {
    const a = new HostLocalAllocator(conf({ subnet: '10.19.0.0/24' }));
    expect((await rejects(a.check({ containerId: 'nope', ifname: 'eth0' }))).message).toContain(
      'no address is held',
    );
    await a.allocate({ containerId: 'c', ifname: 'eth0' });
    await a.check({
      containerId: 'c',
      ifname: 'eth0',
      prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.19.0.2/24' }] },
    });
    const e = await rejects(
      a.check({
        containerId: 'c',
        ifname: 'eth0',
        prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.19.0.7/24' }] },
      }),
    );
    expect(e.message).toContain('10.19.0.7/24 is not held');
  });

  it('GC frees stale, empty and legacy files, keeps valid ones, and clears its own temp files', async () => {
    const c = conf({ subnet: '10.20.0.0/24' });
    const a = new HostLocalAllocator(c);
    for (const id of ['keep', 'drop1', 'drop2']) await a.allocate({ containerId: id, ifname: 'eth0' });
    const dir = join(root, c.name);
    writeFileSync(join(dir, '10.20.0.100'), ''); // the Go plugin's crash leftover (cp#498)
    writeFileSync(join(dir, '10.20.0.101'), 'keep'); // legacy id-only file of a valid container
    writeFileSync(join(dir, '.cni-kit', '.tmp.10.20.0.9.1.ab'), 'x');
    const report = await a.gc([{ containerId: 'keep', ifname: 'eth0' }]);
    expect(report.released.sort()).toEqual(['10.20.0.100', '10.20.0.3', '10.20.0.4']);
    const files = readdirSync(dir).filter((f) => f.startsWith('10.'));
    expect(files.sort()).toEqual(['10.20.0.101', '10.20.0.2']);
    expect(readdirSync(join(dir, '.cni-kit')).filter((f) => f.startsWith('.tmp.'))).toEqual([]);
    expect((await a.gc([])).released.sort()).toEqual(['10.20.0.101', '10.20.0.2']);
  });

  it('STATUS counts free addresses and reports code 50 when a set is full', async () => {
    const a = new HostLocalAllocator(
      conf({ ranges: [[{ subnet: '10.21.0.0/30' }], [{ subnet: 'fd21::/64' }]] }),
    );
    const s = await a.status();
    // Counts are decimal strings: an IPv6 /64 holds more than a JSON number can, and STATUS must serialise.
    expect(
      JSON.parse(JSON.stringify(s)).pools.map((p: IpamPoolStatus) => [p.capacity, p.used, p.free]),
    ).toEqual([
      ['1', 0, '1'],
      [String((1n << 64n) - 2n), 0, String((1n << 64n) - 2n)],
    ]);
    await a.allocate({ containerId: 'c', ifname: 'eth0' });
    const e = await rejects(a.status());
    expect(e.code).toBe(50);
    expect(e.message).toContain('no IP addresses left in range set 10.21.0.1-10.21.0.2');
  });

  it('ctx.ipam runs host-local in process unless exec would run another binary, which gets stdin as sent', async () => {
    const c = conf({ subnet: '10.22.0.0/24' });
    const stdin = `${JSON.stringify(c)}\n`;
    const call = (config: IpamNetConf, path: string[]): CallInfo => ({
      command: 'ADD',
      config: config as NetConf,
      stdin,
      containerId: 'c',
      netns: '/var/run/netns/x',
      ifname: 'eth0',
      args: [],
      path,
      env: {},
      signal: new AbortController().signal,
      log: () => {},
    });
    const runs: Array<{ type: string; binary: string | undefined; command: string; stdin: string }> = [];
    // What the delegate layer would find on CNI_PATH: /ours has cni-kit's host-local, /go another one.
    const exec: IpamExec = {
      async locate(type, path) {
        if (path[0] === '/ours') return { binary: `/ours/${type}`, cniKitType: type };
        if (path[0] === '/go') return { binary: `/go/${type}` };
        return undefined;
      },
      async run({ type, binary, command, stdin: input }) {
        runs.push({ type, binary, command, stdin: input });
        return command === 'ADD' ? { cniVersion: '1.1.0', ips: [{ address: '192.0.2.5/24' }] } : undefined;
      },
    };
    const ipam = createIpamFactory({ exec });
    // No binary on CNI_PATH, then cni-kit's own: both in process (round-robin moves on to .3).
    for (const [path, want] of [
      [[], '10.22.0.2/24'],
      [['/ours'], '10.22.0.3/24'],
    ] as const) {
      const client = ipam(call(c, [...path]));
      expect(client.type).toBe('host-local');
      expect((await client.add()).ips![0]!.address).toBe(want);
      await client.del();
    }
    expect(runs).toEqual([]);
    const go = ipam(call(c, ['/go']));
    expect((await go.add()).ips![0]!.address).toBe('192.0.2.5/24');
    await go.del();
    const dhcp = ipam(call({ ...c, ipam: { type: 'dhcp' } }, []));
    await dhcp.add();
    expect(runs).toEqual([
      { type: 'host-local', binary: '/go/host-local', command: 'ADD', stdin },
      { type: 'host-local', binary: '/go/host-local', command: 'DEL', stdin },
      { type: 'dhcp', binary: undefined, command: 'ADD', stdin },
    ]);
    const { ipam: _ipam, ...noIpam } = c;
    const none = await rejects(ipam(call(noIpam, [])).add());
    expect(none.message).toMatch(/^ipam: missing/);
  });
});
