// The firewall plugin in-process: its iptables rules (the reference's layout, line for line),
// repeated and foreign ADDs, CHECK, DEL from prevResult or from the record alone, rollback of a
// failed ADD, config errors, GC, and the firewalld backend through a fake client and a fake busctl.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import fc from 'fast-check';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { busctlFirewalld, type FirewalldClient } from '../../examples/firewall/firewalld.js';
import {
  containerRules,
  isolationRules,
  missingRules,
  parseFilter,
  planAdd,
  planDelete,
} from '../../examples/firewall/iptables.js';
import { createFirewallPlugin, hostsOf, recordFile } from '../../examples/firewall/plugin.js';
import { type FakeIptables, fakeIptables } from '../helpers/firewall-fake-iptables.js';

const work = mkdtempSync(join(tmpdir(), `firewall-unit-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let dirs = 0;

const prev = (
  ips: string[],
  ifaces = [{ name: 'cni0' }, { name: 'eth0', sandbox: '/var/run/netns/c1' }],
) => ({
  cniVersion: '1.0.0',
  interfaces: ifaces,
  ips: ips.map((address) => ({ address, interface: 1 })),
});

let ipt: FakeIptables;
let dataDir: string;
beforeEach(() => {
  ipt = fakeIptables();
  dataDir = join(work, `d${++dirs}`);
});

/** A fake firewalld: its zones, whether it "runs", and the calls made. */
function fakeFirewalld(running = true) {
  const zones = new Map<string, string>();
  const calls: string[] = [];
  const client: FirewalldClient = {
    running: async () => running,
    async addSource(zone, src) {
      calls.push(`add ${zone} ${src}`);
      const z = zones.get(src);
      if (z === zone) return false;
      if (z) throw new Error(`ZONE_CONFLICT: ${src}`);
      zones.set(src, zone);
      return true;
    },
    async removeSource(zone, src) {
      calls.push(`remove ${zone} ${src}`);
      if (zones.get(src) !== zone) throw new Error(`UNKNOWN_SOURCE: ${src}`);
      zones.delete(src);
    },
    async querySource(zone, src) {
      return zones.get(src) === zone;
    },
  };
  return { zones, calls, client };
}

async function call(
  cmd: string,
  extra: Record<string, unknown>,
  opts: { prevResult?: unknown; cid?: string; firewalld?: FirewalldClient } = {},
) {
  const conf = {
    cniVersion: '1.0.0',
    name: 'fwnet',
    type: 'firewall',
    dataDir,
    ...extra,
    ...(opts.prevResult === undefined ? {} : { prevResult: opts.prevResult }),
  };
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: opts.cid ?? 'ctr1',
    CNI_NETNS: '/var/run/netns/c1',
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/nonexistent',
  };
  const p = createFirewallPlugin({
    iptables: ipt.runner,
    firewalld: opts.firewalld ?? fakeFirewalld(false).client,
    lockFile: join(work, 'lock'),
  });
  const out = await runPlugin(p, { env, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

const FWD = '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD';
const ADMIN = '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN';
const ip4 = ['10.88.0.5/24'];
const dual = ['10.88.0.5/24', 'fd00:88::0005/64'];

describe('firewall rules (iptables backend)', () => {
  it('ADD writes the reference layout in both families and passes prevResult through', async () => {
    const r = await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json).toEqual(prev(dual));
    expect(ipt.lines(4)).toEqual([
      FWD,
      ADMIN,
      '-A CNI-FORWARD -d 10.88.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT',
    ]);
    expect(ipt.lines(6)).toEqual([
      FWD,
      ADMIN,
      '-A CNI-FORWARD -d fd00:88::5/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s fd00:88::5/128 -j ACCEPT',
    ]);
    expect([...ipt.tables[4].keys()]).toEqual(['INPUT', 'FORWARD', 'OUTPUT', 'CNI-FORWARD', 'CNI-ADMIN']);
    // One save and one restore per family, plus -N for the two chains of a fresh node.
    expect(ipt.calls.map((c) => c.cmd)).toEqual([
      'iptables-save',
      'iptables',
      'iptables',
      'iptables-restore',
      'ip6tables-save',
      'ip6tables',
      'ip6tables',
      'ip6tables-restore',
    ]);
  });

  it('an IPv4-only attachment never touches ip6tables (as the reference)', async () => {
    const r = await call('ADD', { backend: 'iptables' }, { prevResult: prev(ip4) });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.calls.some((c) => c.cmd.startsWith('ip6'))).toBe(false);
  });

  it('a repeated ADD and a second container reuse the shared chains and jumps', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(ip4) });
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(ip4) });
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(['10.88.0.6/24']), cid: 'ctr2' });
    expect(ipt.lines(4)).toEqual([
      FWD,
      ADMIN,
      '-A CNI-FORWARD -d 10.88.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT',
      '-A CNI-FORWARD -d 10.88.0.6/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.88.0.6/32 -j ACCEPT',
    ]);
  });

  it('iptablesAdminChainName names the admin chain', async () => {
    const r = await call(
      'ADD',
      { backend: 'iptables', iptablesAdminChainName: 'MY-ADMIN' },
      { prevResult: prev(ip4) },
    );
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.lines(4)[1]).toBe(
      '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j MY-ADMIN',
    );
    expect(ipt.tables[4].has('MY-ADMIN')).toBe(true);
  });

  it('same-bridge adds the isolation chains above CNI-FORWARD, once per bridge', async () => {
    await call('ADD', { backend: 'iptables', ingressPolicy: 'same-bridge' }, { prevResult: prev(ip4) });
    await call(
      'ADD',
      { backend: 'iptables', ingressPolicy: 'same-bridge' },
      { prevResult: prev(['10.88.0.6/24']), cid: 'c2' },
    );
    const l = ipt.lines(4);
    const c = (p: string) => `-m comment --comment "CNI firewall plugin rules (ingressPolicy: ${p})"`;
    expect(l.filter((x) => x.startsWith('-A FORWARD '))).toEqual([
      `-A FORWARD ${c('same-bridge|isolated')} -j CNI-ISOLATION-STAGE-1`,
      FWD,
    ]);
    expect(l.filter((x) => x.includes('-A CNI-ISOLATION'))).toEqual([
      `-A CNI-ISOLATION-STAGE-1 -i cni0 ! -o cni0 ${c('same-bridge')} -j CNI-ISOLATION-STAGE-2`,
      `-A CNI-ISOLATION-STAGE-1 ${c('same-bridge|isolated')} -j RETURN`,
      `-A CNI-ISOLATION-STAGE-2 -o cni0 ${c('same-bridge|isolated')} -j DROP`,
      `-A CNI-ISOLATION-STAGE-2 ${c('same-bridge|isolated')} -j RETURN`,
    ]);
    // A second bridge's rules go above the RETURNs.
    await call(
      'ADD',
      { backend: 'iptables', ingressPolicy: 'isolated' },
      { prevResult: prev(['10.89.0.2/24'], [{ name: 'br1' }]), cid: 'c3' },
    );
    expect(ipt.tables[4].get('CNI-ISOLATION-STAGE-1')).toEqual([
      `-i br1 -o br1 ${c('isolated')} -j DROP`,
      `-i br1 ! -o br1 ${c('isolated')} -j CNI-ISOLATION-STAGE-2`,
      `-i cni0 ! -o cni0 ${c('same-bridge')} -j CNI-ISOLATION-STAGE-2`,
      `${c('same-bridge|isolated')} -j RETURN`,
    ]);
    expect(ipt.tables[4].get('CNI-ISOLATION-STAGE-2')?.at(-1)).toBe(`${c('same-bridge|isolated')} -j RETURN`);
  });

  it('isolation rules the Go plugin 1.1.1 wrote (its older comment) count as present', () => {
    const old = '-m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)"';
    const saved = [
      '*filter',
      ':FORWARD ACCEPT [0:0]',
      ':CNI-ISOLATION-STAGE-1 - [0:0]',
      ':CNI-ISOLATION-STAGE-2 - [0:0]',
      `-A FORWARD ${old} -j CNI-ISOLATION-STAGE-1`,
      `-A CNI-ISOLATION-STAGE-1 -i cni0 ! -o cni0 ${old} -j CNI-ISOLATION-STAGE-2`,
      `-A CNI-ISOLATION-STAGE-1 ${old} -j RETURN`,
      `-A CNI-ISOLATION-STAGE-2 -o cni0 ${old} -j DROP`,
      `-A CNI-ISOLATION-STAGE-2 ${old} -j RETURN`,
      'COMMIT',
    ].join('\n');
    const req = {
      hosts: [],
      admin: 'CNI-ADMIN',
      isolation: { bridge: 'cni0', policy: 'same-bridge' as const },
    };
    expect(planAdd(parseFilter(saved), req)).toEqual({ newChains: [], lines: [], added: [] });
    expect(missingRules(parseFilter(saved), req)).toEqual([]);
    expect(
      isolationRules('cni0', 'same-bridge').every((r) => r.alsoAccept.length === 1 || r.rule.includes(old)),
    ).toBe(true);
  });

  it('for any addresses and any subset already present, the plan completes the table without duplicates and DEL empties it', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `10.${a}.${b}.7/32`);
    const v6 = fc.nat(0xffff).map((a) => `fd00::${a.toString(16)}/128`);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.oneof(v4, v6), { minLength: 1, maxLength: 6 }),
        fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
        (hosts, pre) => {
          const rules = hosts.flatMap((h) => containerRules(h));
          const present = rules.filter((_, i) => pre[i % pre.length]);
          const saved = [
            '*filter',
            ':FORWARD ACCEPT [0:0]',
            ':CNI-FORWARD - [0:0]',
            ...present.map((r) => `-A CNI-FORWARD ${r}`),
            'COMMIT',
          ].join('\n');
          const req = { hosts, admin: 'CNI-ADMIN', isolation: undefined };
          const plan = planAdd(parseFilter(saved), req);
          expect(plan.newChains).toEqual(['CNI-ADMIN']);
          const after = [
            '*filter',
            ':FORWARD ACCEPT [0:0]',
            ':CNI-FORWARD - [0:0]',
            ':CNI-ADMIN - [0:0]',
            ...plan.lines.map((l) => l.replace(/^-I (\S+) 1 /, '-A $1 ')),
            ...present.map((r) => `-A CNI-FORWARD ${r}`),
            'COMMIT',
          ].join('\n');
          const t = parseFilter(after);
          expect(missingRules(t, req)).toEqual([]);
          const fwd = t.rules.get('CNI-FORWARD') ?? [];
          expect(new Set(fwd).size).toBe(fwd.length);
          const del = planDelete(
            t,
            rules.map((r) => ['CNI-FORWARD', r] as const),
          );
          expect(del).toHaveLength(rules.length);
        },
      ),
    );
  });
});

describe('firewall CHECK and DEL', () => {
  it('CHECK passes after ADD and names a rule that went missing (code 999)', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) });
    expect((await call('CHECK', { backend: 'iptables' }, { prevResult: prev(dual) })).exitCode).toBe(0);
    ipt.tables[6].set(
      'CNI-FORWARD',
      (ipt.tables[6].get('CNI-FORWARD') ?? []).filter((r) => !r.startsWith('-s ')),
    );
    const r = await call('CHECK', { backend: 'iptables' }, { prevResult: prev(dual) });
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 999 });
    expect(r.json.msg).toContain(
      'IPv6 filter table lacks what ADD made: -A CNI-FORWARD -s fd00:88::5/128 -j ACCEPT',
    );
  });

  it('CHECK verifies the isolation rules too', async () => {
    await call('ADD', { backend: 'iptables', ingressPolicy: 'same-bridge' }, { prevResult: prev(ip4) });
    ipt.tables[4].set('CNI-ISOLATION-STAGE-2', []);
    const r = await call(
      'CHECK',
      { backend: 'iptables', ingressPolicy: 'same-bridge' },
      { prevResult: prev(ip4) },
    );
    expect(r.json?.msg).toMatch(/-A CNI-ISOLATION-STAGE-2 -o cni0 .* -j DROP/);
  });

  it('DEL with prevResult removes only the container rules; shared chains stay (as the reference)', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) });
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(['10.88.0.6/24']), cid: 'c2' });
    const r = await call('DEL', { backend: 'iptables' }, { prevResult: prev(dual) });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.lines(4)).toEqual([
      FWD,
      ADMIN,
      '-A CNI-FORWARD -d 10.88.0.6/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.88.0.6/32 -j ACCEPT',
    ]);
    expect(ipt.lines(6)).toEqual([FWD, ADMIN]);
    expect(existsSync(recordFile(dataDir, 'ctr1', 'eth0'))).toBe(false);
  });

  it('DEL without prevResult (netns gone) finds the addresses in the record; a second DEL does nothing', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) });
    const r = await call('DEL', {});
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.lines(4)).toEqual([FWD, ADMIN]);
    expect(ipt.lines(6)).toEqual([FWD, ADMIN]);
    const before = ipt.calls.length;
    expect((await call('DEL', {})).exitCode).toBe(0);
    expect(ipt.calls.length).toBe(before);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('DEL removes the rules the Go plugin wrote (same lines, no record) from prevResult', async () => {
    ipt.tables[4].set('CNI-FORWARD', [
      '-m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
      ...containerRules('10.88.0.5/32'),
    ]);
    const r = await call('DEL', { backend: 'iptables' }, { prevResult: prev(ip4) });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.tables[4].get('CNI-FORWARD')).toEqual([
      '-m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
    ]);
  });

  it('DEL succeeds when ip6tables cannot run (nothing of ours can be there)', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(ip4) });
    ipt.fail = (cmd) => cmd.startsWith('ip6');
    expect((await call('DEL', { backend: 'iptables' }, { prevResult: prev(dual) })).exitCode).toBe(0);
    expect(ipt.lines(4)).toEqual([FWD, ADMIN]);
  });

  it('GC removes the rules of attachments not in the valid list, of this network only', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(['10.88.0.5/24']), cid: 'keep' });
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(['10.88.0.6/24']), cid: 'gone' });
    await call(
      'ADD',
      { backend: 'iptables', name: 'other' },
      { prevResult: prev(['10.88.0.7/24']), cid: 'othernet' },
    );
    const r = await call('GC', {
      cniVersion: '1.1.0',
      'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }],
    });
    expect(r.exitCode, r.stdout).toBe(0);
    const fwd = ipt.tables[4].get('CNI-FORWARD') ?? [];
    expect(fwd.some((x) => x.includes('10.88.0.5/32'))).toBe(true);
    expect(fwd.some((x) => x.includes('10.88.0.6/32'))).toBe(false);
    expect(fwd.some((x) => x.includes('10.88.0.7/32'))).toBe(true);
    expect(readdirSync(dataDir).sort()).toEqual(['keep_eth0.json', 'othernet_eth0.json']);
  });
});

describe('firewall: errors and rollback', () => {
  it('ADD and CHECK without prevResult are code 7 naming it', async () => {
    for (const cmd of ['ADD', 'CHECK']) {
      const r = await call(cmd, { backend: 'iptables' });
      expect(r.exitCode).toBe(1);
      expect(r.json).toMatchObject({ code: 7 });
      expect(r.json.msg).toMatch(/^prevResult: missing; firewall must run chained/);
    }
    expect(ipt.calls).toEqual([]);
  });

  it.each([
    [{ backend: 'nftables' }, /^backend: "nftables" must be one of "iptables", "firewalld"/],
    [
      { ingressPolicy: 'closed' },
      /^ingressPolicy: "closed" must be one of "open", "same-bridge", "isolated"/,
    ],
    [
      { iptablesAdminChainName: 'A'.repeat(29) },
      /^iptablesAdminChainName: "A{29}" is longer than the 28 characters/,
    ],
    [{ iptablesAdminChainName: 'my admin' }, /^iptablesAdminChainName: "my admin" is not a chain name/],
    [
      { iptablesAdminChainName: 'CNI-FORWARD' },
      /^iptablesAdminChainName: "CNI-FORWARD" is the plugin's own chain/,
    ],
    [{ iptablesAdminChainName: 'ACCEPT' }, /^iptablesAdminChainName: "ACCEPT" is a built-in chain or target/],
  ])('bad config %j is code 7 naming the field, before anything changes', async (extra, msg) => {
    const r = await call('ADD', extra, { prevResult: prev(ip4) });
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 7 });
    expect(r.json.msg).toMatch(msg);
    expect(ipt.calls).toEqual([]);
  });

  it('"" and null mean the defaults, as in the reference', async () => {
    const r = await call(
      'ADD',
      { backend: 'iptables', ingressPolicy: '', firewalldZone: null, iptablesAdminChainName: '' },
      { prevResult: prev(ip4) },
    );
    expect(r.exitCode, r.stdout).toBe(0);
    expect(ipt.lines(4)).toContain(ADMIN);
    expect(ipt.tables[4].has('CNI-ISOLATION-STAGE-1')).toBe(false);
  });

  it('same-bridge with no interface in prevResult is code 7 and changes nothing', async () => {
    const r = await call(
      'ADD',
      { backend: 'iptables', ingressPolicy: 'same-bridge' },
      { prevResult: prev(ip4, []) },
    );
    expect(r.json).toMatchObject({ code: 7 });
    expect(r.json.msg).toMatch(
      /^ingressPolicy: "same-bridge" needs the bridge as prevResult's first interface/,
    );
    expect(ipt.calls).toEqual([]);
    expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
  });

  it('a failed ADD undoes the other family and its record; the error names the tool', async () => {
    ipt.fail = (cmd) => cmd === 'ip6tables-restore';
    const r = await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) });
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 999 });
    expect(r.json.msg).toMatch(/^firewall: ip6tables-restore failed \(exit 1\)/);
    // Everything the IPv4 half made is gone again, the shared chains it created included.
    expect(ipt.lines(4)).toEqual([]);
    expect([...ipt.tables[4].keys()]).toEqual(['INPUT', 'FORWARD', 'OUTPUT']);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('a failed repeated ADD keeps the earlier record and the earlier rules', async () => {
    await call('ADD', { backend: 'iptables' }, { prevResult: prev(ip4) });
    ipt.fail = (cmd) => cmd === 'ip6tables-restore';
    expect((await call('ADD', { backend: 'iptables' }, { prevResult: prev(dual) })).exitCode).toBe(1);
    expect(ipt.lines(4)).toContain('-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT');
    ipt.fail = () => false;
    expect((await call('DEL', {})).exitCode).toBe(0);
    expect(ipt.lines(4)).toEqual([FWD, ADMIN]);
  });

  it('hostsOf formats addresses as the reference (compressed IPv6, /32 and /128, no duplicates)', () => {
    expect(hostsOf(prev(['10.1.0.5/24', '10.1.0.5/16', 'FD00:0::0001/64']) as never)).toEqual([
      '10.1.0.5/32',
      'fd00::1/128',
    ]);
  });
});

describe('firewall: firewalld backend', () => {
  it('ADD puts each address in the zone; CHECK queries it; DEL takes it out', async () => {
    const fw = fakeFirewalld();
    const add = await call('ADD', { firewalldZone: 'cni' }, { prevResult: prev(dual), firewalld: fw.client });
    expect(add.exitCode, add.stdout).toBe(0);
    expect([...fw.zones]).toEqual([
      ['10.88.0.5/32', 'cni'],
      ['fd00:88::5/128', 'cni'],
    ]);
    expect(ipt.calls).toEqual([]);
    expect(
      (await call('CHECK', { firewalldZone: 'cni' }, { prevResult: prev(dual), firewalld: fw.client }))
        .exitCode,
    ).toBe(0);
    fw.zones.delete('fd00:88::5/128');
    const chk = await call(
      'CHECK',
      { firewalldZone: 'cni' },
      { prevResult: prev(dual), firewalld: fw.client },
    );
    expect(chk.json?.msg).toBe('CHECK: firewalld zone cni does not hold the source fd00:88::5/128');
    // DEL without prevResult uses the record (zone included) and ignores a source already gone.
    const del = await call('DEL', {}, { firewalld: fw.client });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(fw.zones.size).toBe(0);
    expect(fw.calls.filter((c) => c.startsWith('remove'))).toEqual([
      'remove cni 10.88.0.5/32',
      'remove cni fd00:88::5/128',
    ]);
  });

  it('the default zone is trusted; an address already in it is success and not undone by a rollback', async () => {
    const fw = fakeFirewalld();
    fw.zones.set('10.88.0.5/32', 'trusted');
    const r = await call(
      'ADD',
      { backend: 'firewalld', ingressPolicy: 'same-bridge' },
      { prevResult: prev(dual), firewalld: fw.client },
    );
    expect(r.exitCode).toBe(0);
    // same-bridge is iptables whatever the backend (as the reference).
    expect(ipt.tables[4].has('CNI-ISOLATION-STAGE-1')).toBe(true);
    expect(ipt.tables[4].has('CNI-FORWARD')).toBe(false);
    // Now the isolation rules fail: the address this ADD added goes, the one that was there stays.
    const fw2 = fakeFirewalld();
    fw2.zones.set('10.88.0.5/32', 'trusted');
    ipt = fakeIptables();
    ipt.fail = (cmd) => cmd === 'ip6tables-restore';
    const bad = await call(
      'ADD',
      { backend: 'firewalld', ingressPolicy: 'same-bridge' },
      { prevResult: prev(dual), firewalld: fw2.client, cid: 'c9' },
    );
    expect(bad.exitCode).toBe(1);
    expect([...fw2.zones]).toEqual([['10.88.0.5/32', 'trusted']]);
  });

  it('DEL succeeds and drops the record when firewalld refuses (stopped since ADD), logging why', async () => {
    const fw = fakeFirewalld();
    await call('ADD', { backend: 'firewalld' }, { prevResult: prev(ip4), firewalld: fw.client });
    const down: FirewalldClient = {
      ...fw.client,
      removeSource: async () => {
        throw new Error('firewalld: removeSource failed (busctl exit 1): Failed to connect to bus');
      },
    };
    const r = await call('DEL', {}, { firewalld: down });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stderr).toContain('Failed to connect to bus');
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('without "backend", firewalld is used when it runs and iptables otherwise', async () => {
    const on = fakeFirewalld(true);
    await call('ADD', {}, { prevResult: prev(ip4), firewalld: on.client });
    expect(on.zones.size).toBe(1);
    expect(ipt.calls).toEqual([]);
    const off = fakeFirewalld(false);
    await call('ADD', {}, { prevResult: prev(ip4), firewalld: off.client, cid: 'c2' });
    expect(off.zones.size).toBe(0);
    expect(ipt.lines(4)).toContain('-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT');
  });

  it('busctl: the reference calls on the system bus or a given address, replies and errors read', async () => {
    const seen: string[][] = [];
    const replies: Record<string, { code: number; stdout: string; stderr: string }> = {
      GetNameOwner: {
        code: 1,
        stdout: '',
        stderr: "Call failed: Could not get owner of name 'org.fedoraproject.FirewallD1': no such name",
      },
      addSource: {
        code: 1,
        stdout: '',
        stderr: "Call failed: ZONE_ALREADY_SET: '10.1.0.5/32' already bound to 'trusted'",
      },
      querySource: { code: 0, stdout: 'b true\n', stderr: '' },
      removeSource: {
        code: 1,
        stdout: '',
        stderr: "Call failed: UNKNOWN_SOURCE: '10.1.0.5/32' is not in any zone",
      },
    };
    const runner = async (cmd: string, args: readonly string[]) => {
      seen.push([cmd, ...args]);
      return replies[args[6] ?? ''] ?? { code: 1, stdout: '', stderr: '?' };
    };
    const c = busctlFirewalld({ runner, address: 'unix:path=/run/test/bus' });
    expect(await c.running()).toBe(false);
    expect(await c.addSource('trusted', '10.1.0.5/32')).toBe(false);
    expect(await c.querySource('trusted', '10.1.0.5/32')).toBe(true);
    await expect(c.removeSource('trusted', '10.1.0.5/32')).rejects.toThrow(/UNKNOWN_SOURCE/);
    expect(seen[1]).toEqual([
      'busctl',
      '--address=unix:path=/run/test/bus',
      '--timeout=10',
      'call',
      'org.fedoraproject.FirewallD1',
      '/org/fedoraproject/FirewallD1',
      'org.fedoraproject.FirewallD1.zone',
      'addSource',
      'ss',
      'trusted',
      '10.1.0.5/32',
    ]);
    replies.addSource = { code: 1, stdout: '', stderr: 'Call failed: INVALID_ZONE: nosuch' };
    await expect(c.addSource('nosuch', '10.1.0.5/32')).rejects.toMatchObject({
      code: 7,
      message: expect.stringMatching(/^firewalldZone: "nosuch" is not a zone firewalld knows/),
    });
    replies.addSource = { code: 1, stdout: '', stderr: 'Call failed: ZONE_CONFLICT: 10.1.0.5/32' };
    await expect(c.addSource('trusted', '10.1.0.5/32')).rejects.toMatchObject({ code: 999 });
    const sys = busctlFirewalld({ runner });
    await sys.running();
    expect(seen.at(-1)?.slice(0, 9)).toEqual([
      'busctl',
      '--system',
      '--timeout=10',
      'call',
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'GetNameOwner',
      's',
    ]);
  });
});
