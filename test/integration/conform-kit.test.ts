// `cni-kit conform` itself: its leftover diff and allowlist on made-up snapshots, the command
// (exit codes, --json, --junit, --no-node-netns, timeouts, SIGINT), and fixture plugins: a correct
// one passes every check, and each broken in exactly one way fails exactly the check aimed at it.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { cliMain } from '../../src/cli/main.js';
import { BY_DESIGN_LEFTOVERS, type ConformReport, NETNS_PREFIX } from '../../src/conform/index.js';
import {
  diffFileSnapshots,
  diffNetSnapshots,
  type NetSnapshot,
  parseIptablesSave,
  parseNftRuleset,
} from '../../src/conform/snapshot.js';
import {
  cliChild,
  collect,
  conform,
  detailsOf,
  expectAllPass,
  extraNetns,
  FIXTURES,
  failedIds,
  failures,
  fixture,
  fixtureConfig,
  freshDir,
  hangingNetns,
  need,
  netnsOfRun,
  passedIds,
  sleeping,
  tag,
  until,
  useConformSuite,
} from '../helpers/conform.js';

useConformSuite();

describe('the leftover diff and its allowlist, on made-up snapshots', () => {
  const ctx = { kitLinks: new Set<string>(), sharedLinks: new Set<string>(), runTag: 'ab12cd34' };
  const snap = (over: Partial<NetSnapshot>): NetSnapshot => ({
    links: new Map(),
    addrs: [],
    routes: [],
    rules: [],
    iptables: [],
    nft: null,
    ...over,
  });
  const ipt = (lines: string[]) => parseIptablesSave(['*nat', ...lines, 'COMMIT'].join('\n'), 'ip4');

  it('shared chains and their plumbing may stay; a per-container rule or chain may not', () => {
    const before = snap({ iptables: ipt([':POSTROUTING ACCEPT [0:0]']) });
    const after = snap({
      iptables: ipt([
        ':POSTROUTING ACCEPT [7:420]',
        ':PREROUTING ACCEPT [0:0]',
        ':CNI-HOSTPORT-DNAT - [0:0]',
        ':CNI-HOSTPORT-MASQ - [0:0]',
        ':CNI-DN-0123456789abcdef01234 - [0:0]',
        ':CNI-DN-fedcba9876543210fedcb - [0:0]',
        ':CNI-0123456789abcdef01234567 - [0:0]',
        '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT',
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
        '-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE',
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"n\\" id: \\"ck-ab12cd34-3\\"" -j CNI-DN-fedcba9876543210fedcb',
        '-A CNI-DN-fedcba9876543210fedcb -p tcp --dport 80 -j DNAT --to-destination 10.1.0.5:80',
        '-A POSTROUTING -s 10.1.0.5/32 -j CNI-0123456789abcdef01234567',
        '-A CNI-HOSTPORT-MASQ -s fd00::5/128 -j MASQUERADE',
      ]),
    });
    const problems = diffNetSnapshots(before, after, ctx);
    expect(problems).toEqual([
      'chain ip4 nat: :CNI-DN-fedcba9876543210fedcb - left behind',
      'chain ip4 nat: :CNI-0123456789abcdef01234567 - left behind',
      expect.stringMatching(
        /^rule ip4 nat: -A CNI-HOSTPORT-DNAT .* -j CNI-DN-fedcba9876543210fedcb left behind$/,
      ),
      'rule ip4 nat: -A CNI-DN-fedcba9876543210fedcb -p tcp --dport 80 -j DNAT --to-destination 10.1.0.5:80 left behind',
      'rule ip4 nat: -A POSTROUTING -s 10.1.0.5/32 -j CNI-0123456789abcdef01234567 left behind',
      'rule ip4 nat: -A CNI-HOSTPORT-MASQ -s fd00::5/128 -j MASQUERADE left behind',
    ]);
    // The reverse direction: a plugin that deletes someone else's rule is reported too.
    expect(diffNetSnapshots(after, before, ctx)).toContain(
      'rule ip4 nat: -A POSTROUTING -s 10.1.0.5/32 -j CNI-0123456789abcdef01234567 removed',
    );
  });

  it('links, addresses, routes and nft rules; the bridge of a bridge config may stay', () => {
    const lo = { kind: 'loopback', mtu: 65536, flags: ['LOOPBACK'] };
    const before = snap({ links: new Map([['lo', lo]]), nft: parseNftRuleset('') });
    const after = snap({
      links: new Map([
        ['lo', { ...lo, flags: ['LOOPBACK', 'UP'] }],
        ['cni0', { kind: 'bridge', flags: ['UP'] }],
        ['veth1', { kind: 'veth', master: 'cni0', flags: ['UP'] }],
      ]),
      addrs: [
        { dev: 'cni0', key: '10.1.0.1/24 on cni0' },
        { dev: 'lo', key: '10.9.9.9/32 on lo' },
      ],
      routes: [{ dev: 'lo', key: 'inet 10.1.0.5 dev lo table 200 proto boot' }],
      nft: parseNftRuleset(
        [
          'table bridge t {',
          '\tchain prerouting {',
          '\t\ttype filter hook prerouting priority -300; policy accept;',
          '\t\tiifname "veth1" counter packets 4 bytes 120 jump c-1',
          '\t}',
          '\tchain c-1 {',
          '\t}',
          '}',
        ].join('\n'),
      ),
    });
    const shared = new Set(BY_DESIGN_LEFTOVERS.sharedLinks({ type: 'bridge', bridge: 'cni0' }));
    expect([...shared]).toEqual(['cni0']);
    expect(BY_DESIGN_LEFTOVERS.sharedLinks({ type: 'ptp' })).toEqual([]);
    expect(diffNetSnapshots(before, after, { ...ctx, sharedLinks: shared })).toEqual([
      'link lo changed: flags LOOPBACK -> LOOPBACK,UP',
      'link veth1 (veth) left behind',
      'address 10.9.9.9/32 on lo left behind',
      'route inet 10.1.0.5 dev lo table 200 proto boot left behind',
      'rule nft bridge t chain prerouting: iifname "veth1" counter jump c-1 left behind',
    ]);
    // A node veth that a config names as its bridge is not the plugin's: changing it is reported.
    const veth = { kind: 'veth', mtu: 1500, flags: ['BROADCAST'] };
    const vBefore = snap({
      links: new Map([
        ['lo', lo],
        ['cni0', veth],
      ]),
      nft: parseNftRuleset(''),
    });
    const vAfter = snap({
      links: new Map([
        ['lo', lo],
        ['cni0', { ...veth, flags: ['BROADCAST', 'UP'] }],
      ]),
      nft: parseNftRuleset(''),
    });
    expect(diffNetSnapshots(vBefore, vAfter, { ...ctx, sharedLinks: shared })).toEqual([
      'link cni0 changed: flags BROADCAST -> BROADCAST,UP',
    ]);
  });

  it("portmap's cni_hostport plumbing may stay; a rule naming the container, its address or another chain may not", () => {
    const table = (family: string, lines: string[]) => [`table ${family} cni_hostport {`, ...lines, '}'];
    const chain = (name: string, rules: string[], hook?: string) => [
      `\tchain ${name} {`,
      ...(hook ? [`\t\ttype nat hook ${hook} priority dstnat; policy accept;`] : []),
      ...rules.map((r) => `\t\t${r}`),
      '\t}',
    ];
    const plumbing = (family: string) =>
      table(family, [
        ...chain('hostip_hostports', []),
        ...chain('hostports', []),
        ...chain('hostports_all', ['jump hostip_hostports', 'jump hostports']),
        ...chain('prerouting', ['fib daddr type local jump hostports_all'], 'prerouting'),
        ...chain('output', ['fib daddr type local jump hostports_all'], 'output'),
        ...chain('masquerading', [], 'postrouting'),
      ]);
    const before = snap({ nft: parseNftRuleset('') });
    const clean = snap({ nft: parseNftRuleset([...plumbing('ip'), ...plumbing('ip6')].join('\n')) });
    expect(diffNetSnapshots(before, clean, ctx)).toEqual([]);
    // The same table with what must not stay: the container's rules (its address, its ID), a jump
    // to a chain that is not the table's plumbing, a verdict map, and plumbing-like rules in a
    // table that is not shared.
    const leaky = [
      ...table('ip', [
        ...chain('hostports', [
          'tcp dport 8080 dnat to 10.1.0.5:80 comment "ck-ab12cd34-1"',
          'tcp dport 8081 dnat to 10.1.0.6:80',
        ]),
        ...chain('hostports_all', ['jump hostports', 'jump ctr-7']),
        ...chain('ctr-7', []),
        ...chain(
          'prerouting',
          ['fib daddr type local jump hostports_all', 'meta l4proto tcp comment "ck-ab12cd34-2"'],
          'prerouting',
        ),
        ...chain('output', ['ip daddr vmap { 10.9.0.0/16 : jump hostports }']),
        ...chain('masquerading', ['ip saddr 10.1.0.5 ip daddr 10.1.0.5 masquerade'], 'postrouting'),
      ]),
      ...table('ip6', [...chain('hostports', ['tcp dport 8080 dnat to [fd00::5]:80'])]),
      ...table('ip', []).map((l) => l.replace('cni_hostport', 'other')),
    ];
    leaky.splice(leaky.length - 1, 0, ...chain('hostports_all', ['jump hostports']));
    expect(diffNetSnapshots(before, snap({ nft: parseNftRuleset(leaky.join('\n')) }), ctx)).toEqual([
      'rule nft ip cni_hostport chain hostports: tcp dport 8080 dnat to 10.1.0.5:80 comment "ck-ab12cd34-1" left behind',
      'rule nft ip cni_hostport chain hostports: tcp dport 8081 dnat to 10.1.0.6:80 left behind',
      'rule nft ip cni_hostport chain hostports_all: jump ctr-7 left behind',
      'rule nft ip cni_hostport chain prerouting: meta l4proto tcp comment "ck-ab12cd34-2" left behind',
      'rule nft ip cni_hostport chain output: ip daddr vmap { 10.9.0.0/16 : jump hostports } left behind',
      'rule nft ip cni_hostport chain masquerading: ip saddr 10.1.0.5 ip daddr 10.1.0.5 masquerade left behind',
      'rule nft ip6 cni_hostport chain hostports: tcp dport 8080 dnat to [fd00::5]:80 left behind',
      'rule nft ip other chain hostports_all: jump hostports left behind',
    ]);
    // A plugin that removes the shared plumbing is not reported (a DEL may tear it down).
    expect(diffNetSnapshots(clean, before, ctx)).toEqual([]);
  });

  it("the firewall's isolation chains and their per-bridge rules may stay; a rule naming an address may not", () => {
    const filter = (lines: string[]) => parseIptablesSave(['*filter', ...lines, 'COMMIT'].join('\n'), 'ip4');
    const before = snap({ iptables: filter([':FORWARD ACCEPT [0:0]']) });
    const shared = [
      ':FORWARD ACCEPT [0:0]',
      ':CNI-ISOLATION-STAGE-1 - [0:0]',
      ':CNI-ISOLATION-STAGE-2 - [0:0]',
      '-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1',
      '-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2',
      '-A CNI-ISOLATION-STAGE-1 -j RETURN',
      '-A CNI-ISOLATION-STAGE-2 -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP',
      '-A CNI-ISOLATION-STAGE-2 -j RETURN',
    ];
    expect(diffNetSnapshots(before, snap({ iptables: filter(shared) }), ctx)).toEqual([]);
    const after = snap({
      iptables: filter([
        ...shared,
        ':CNI-ISOLATION-STAGE-3 - [0:0]',
        '-A CNI-ISOLATION-STAGE-2 -s 10.1.0.5/32 -j DROP',
        '-A CNI-ISOLATION-STAGE-1 -m comment --comment "ck-ab12cd34-4" -j RETURN',
      ]),
    });
    expect(diffNetSnapshots(before, after, ctx)).toEqual([
      'chain ip4 filter: :CNI-ISOLATION-STAGE-3 - left behind',
      'rule ip4 filter: -A CNI-ISOLATION-STAGE-2 -s 10.1.0.5/32 -j DROP left behind',
      'rule ip4 filter: -A CNI-ISOLATION-STAGE-1 -m comment --comment "ck-ab12cd34-4" -j RETURN left behind',
    ]);
  });

  it("data dirs: host-local's allocator files may stay, a reservation may not", () => {
    const after = new Set(['/d/net/last_reserved_ip.0', '/d/net/lock', '/d/net/10.1.0.5', '/d/old']);
    expect(diffFileSnapshots(new Set(['/d/old']), after)).toEqual(['file /d/net/10.1.0.5 left behind']);
    expect(BY_DESIGN_LEFTOVERS.isDataFile('last_reserved_ip.1')).toBe(true);
    expect(BY_DESIGN_LEFTOVERS.isDataFile('10.1.0.5')).toBe(false);
  });
});

describe('the command and the run itself', () => {
  it('usage errors exit 2; a failing plugin exits 1 and prints the table', async (ctx) => {
    need(ctx);
    const out: string[] = [];
    const capture = (s: string | Uint8Array) => {
      out.push(String(s));
      return true;
    };
    const so = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
    const se = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
    try {
      const conf = join(freshDir('cli'), 'conf.json');
      writeFileSync(conf, JSON.stringify({ cniVersion: '1.0.0', name: `${tag}cli`, ...fixtureConfig() }));
      expect(await cliMain(['conform', fixture()])).toBe(2);
      expect(await cliMain(['conform', fixture(), '--config', conf, '--versions', '9.9.9'])).toBe(2);
      expect(await cliMain(['conform', fixture(), '--config', conf, '--concurrency', '0'])).toBe(2);
      expect(await cliMain(['conform', join(FIXTURES, 'nope'), '--config', conf])).toBe(2);
      out.length = 0;
      const code = await cliMain([
        'conform',
        fixture('bad-json-code'),
        '--config',
        conf,
        '--versions',
        '1.0.0',
      ]);
      expect(code).toBe(1);
      const text = out.join('');
      expect(text).toMatch(/^CHECK\s+VERSION\s+RESULT\s+DETAIL$/m);
      expect(text).toMatch(/^error:bad-json\s+-\s+FAIL\s+code 7 .*want 6$/m);
      expect(text).toMatch(/^add\s+1\.0\.0\s+PASS\s+/m);
      expect(text).toMatch(/\d+ passed, 1 failed, \d+ skipped in/);
    } finally {
      so.mockRestore();
      se.mockRestore();
    }
  }, 60_000);

  it('--no-node-netns inside a netns of the test, --json and --junit: exit 0', async (ctx) => {
    need(ctx);
    const ns = `${tag}-cli`;
    spawnSync('ip', ['netns', 'del', ns]);
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    extraNetns.push(ns);
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const dir = freshDir('cli');
    const conf = join(dir, 'conf.json');
    writeFileSync(conf, JSON.stringify({ cniVersion: '1.0.0', name: `${tag}nn`, ...fixtureConfig() }));
    const junit = join(dir, 'report.xml');
    const args = [
      fixture(),
      '--config',
      conf,
      '--versions',
      '1.1.0',
      '--no-node-netns',
      '--json',
      '--junit',
      junit,
    ];
    const { code, stdout, stderr } = await collect(cliChild(args, ns));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as ConformReport;
    expect(report.failed).toBe(0);
    expect(report.versions).toEqual(['1.1.0']);
    expect(passedIds(report)).toEqual(
      expect.arrayContaining(['gc@1.1.0', 'status@1.1.0', 'leftovers@1.1.0']),
    );
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>/);
    expect(xml).toContain(`tests="${report.checks.length}" failures="0"`);
    expect(xml).toContain('<testcase classname="conform.1.1.0" name="concurrent-addresses"');
    // Nothing of the run stayed in the test's netns (the plugin's shared chain may).
    const links = spawnSync('ip', ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
    expect(links.trim().split('\n')).toHaveLength(1);
  }, 60_000);

  it('a plugin call past --timeout-ms is killed with its process group; the run goes on', async (ctx) => {
    need(ctx);
    const r = await conform(fixture('hang-on-add'), fixtureConfig(), {
      versions: ['1.0.0'],
      // Long enough for every other call of the fixture (a Node process) on a loaded machine; only
      // the hanging ADD, which sleeps a minute, may reach it.
      timeoutMs: 5000,
      concurrency: 2,
    });
    expect(failedIds(r), failures(r).join('\n')).toEqual(['add', 'concurrent-add']);
    expect(detailsOf(r, 'add')[0]).toMatch(/timed out after \d+ ms \(process group killed\)/);
    expect(passedIds(r)).toEqual(
      expect.arrayContaining(['del@1.0.0', 'leftovers@1.0.0', 'leftovers:concurrent@1.0.0']),
    );
    expect(sleeping()).toBe(false);
    expect(r.netns).toMatch(new RegExp(`^${NETNS_PREFIX}[0-9a-f]{8}$`));
    expect(netnsOfRun(r.netns)).toEqual([]);
  }, 60_000);

  it('SIGINT kills the running plugin, removes every namespace and exits 130', async (ctx) => {
    need(ctx);
    const conf = join(freshDir('cli'), 'conf.json');
    writeFileSync(conf, JSON.stringify({ cniVersion: '1.0.0', name: `${tag}int`, ...fixtureConfig() }));
    const child = cliChild([fixture('hang-on-add'), '--config', conf, '--versions', '1.0.0', '--json']);
    const done = collect(child);
    await until('the hanging ADD', sleeping);
    const container = hangingNetns();
    const node = container.replace(/-\d+$/, '');
    expect(node).toMatch(new RegExp(`^${NETNS_PREFIX}[0-9a-f]{8}$`));
    expect(netnsOfRun(node)).toEqual(expect.arrayContaining([node, container]));
    child.kill('SIGINT');
    const { code, stdout } = await done;
    expect(code).toBe(130);
    const report = JSON.parse(stdout) as ConformReport;
    expect(report.aborted).toBe(true);
    expect(report.netns).toBe(node);
    expect(sleeping()).toBe(false);
    expect(netnsOfRun(node)).toEqual([]);
  }, 60_000);
});

describe.concurrent('fixture plugins', () => {
  it('the correct fixture passes every check at 0.3.1 and 1.1.0', async (ctx) => {
    need(ctx);
    const r = await conform(fixture(), fixtureConfig(), { versions: ['0.3.1', '1.1.0'] });
    expectAllPass(r, ['0.3.1', '1.1.0']);
    expect(r.checks.filter((c) => c.status === 'skip').map((c) => `${c.check}@${c.version}`)).toEqual([
      'check@0.3.1',
    ]);
  }, 120_000);

  const BROKEN: Array<{ mode: string; fails: string[]; detail: RegExp; versions?: string[] }> = [
    {
      mode: 'log-before-json',
      fails: ['add', 'concurrent-add'],
      detail: /stdout is not one JSON document: "plugin: added/,
    },
    {
      mode: 'ip-index-out-of-range',
      fails: ['add'],
      detail: /ips\[0\]\.interface: 5 is out of range \(the result lists 2/,
    },
    { mode: 'bad-json-code', fails: ['error:bad-json'], detail: /^code 7 .*want 6$/ },
    {
      mode: 'del-netns-gone-fails',
      fails: ['del-netns-gone'],
      detail: /gone: exit status 1: code 999: cannot open netns/,
    },
    {
      mode: 'del-requires-state',
      fails: ['del-twice'],
      detail: /second DEL: exit status 1: .*already deleted/,
    },
    {
      mode: 'leave-link',
      fails: ['leftovers', 'leftovers:concurrent'],
      detail: /node: link ckf[0-9a-f]{10} \(veth\) left behind/,
    },
    // The netns-gone flow gets the address whose route the lifecycle flow left, so its own
    // before/after diff is empty: each flow answers only for what it changed.
    {
      mode: 'leave-route',
      fails: ['leftovers', 'leftovers:concurrent'],
      detail: /node: route inet 10\.90\.0\.\d+ dev lo table 200 (proto \w+ )?(scope \w+ )?left behind/,
    },
    {
      mode: 'leave-file',
      fails: ['leftovers', 'leftovers:concurrent', 'leftovers:netns-gone'],
      detail: /file .*\/10\.90\.0\.\d+ left behind/,
    },
    {
      mode: 'leave-rule',
      fails: ['leftovers', 'leftovers:concurrent', 'leftovers:netns-gone'],
      detail: /^node: rule ip4 filter: -A CNI-FORWARD -s 10\.90\.0\.\d+\/32 -m comment --comment "?ckfix:ck-/,
    },
    {
      mode: 'dup-addresses',
      fails: ['concurrent-addresses'],
      detail: /10\.90\.0\.\d+ handed to ADD #\d and ADD #\d/,
    },
    {
      mode: 'no-supported-versions',
      fails: ['version', 'version:config'],
      detail: /^supportedVersions: missing$/,
    },
    {
      mode: 'check-unsupported',
      fails: ['check'],
      detail: /^CHECK: exit status 1: code 7: CHECK is not supported$/,
    },
    {
      mode: 'exit-zero-on-error',
      fails: [
        'error:bad-json',
        'error:missing-containerid',
        'error:missing-ifname',
        'error:missing-netns',
        'error:unknown-command',
        'error:unsupported-version',
      ],
      detail: /^exit status 0 \(stdout .*code.*\); an error must exit non-zero$/,
    },
    {
      mode: 'gc-drops-valid',
      fails: ['gc'],
      detail: /^GC broke attachment\(s\) it was told are valid; CHECK ck-/,
      versions: ['1.1.0'],
    },
  ];
  for (const b of BROKEN) {
    it(`${b.mode}: fails ${b.fails.join(', ')} and nothing else`, async (ctx) => {
      need(ctx);
      const versions = b.versions ?? ['1.0.0'];
      const r = await conform(fixture(b.mode), fixtureConfig(), { versions });
      expect(failedIds(r), failures(r).join('\n')).toEqual([...b.fails].sort());
      for (const check of b.fails) {
        const ds = detailsOf(r, check);
        expect(ds.length).toBeGreaterThan(0);
        if (check === b.fails[0]) for (const d of ds) expect(d).toMatch(b.detail);
      }
      expect(r.ok).toBe(false);
    }, 120_000);
  }
});
